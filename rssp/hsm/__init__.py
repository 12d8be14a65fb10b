"""HSM layer: async access to a PKCS#11 token (SoftHSM2) on one dedicated thread per process."""

from .softhsm import DEFAULT_MODULE, init_softhsm_instance
from .types import GeneratedKey, HashName, HsmError, KeyNotFound, KeySpec, SignMechanism
from .worker import Hsm

__all__ = [
    "DEFAULT_MODULE",
    "GeneratedKey",
    "HashName",
    "Hsm",
    "HsmError",
    "KeyNotFound",
    "KeySpec",
    "SignMechanism",
    "init_softhsm_instance",
]
