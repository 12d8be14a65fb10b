"""Signed documents for ``signatures/signDoc``: PAdES and CAdES at ETSI baseline levels B-B to B-LTA.

The engines here are document code on pyHanko and asn1crypto, written against pyHanko's own
``Signer``/``TimeStamper``/``ValidationContext`` objects (:class:`model.SigningTools`), so they know
nothing of HTTP, the SAM or the TSA pool; :mod:`rssp.api.signdoc` and :mod:`rssp.documents.tools`
supply those objects.
"""
