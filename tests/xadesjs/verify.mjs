// An independent XAdES check for rssp's tests: xadesjs (PeculiarVentures) verifies the XML-DSig core
// (every reference, the signature value with the KeyInfo certificate) and parses the XAdES
// qualifying properties with its own schema classes; the properties it read are printed as JSON
// for the Python test to compare (xadesjs checks only the v1 SigningCertificate itself).
// xadesjs knows the unsigned properties of TS 101 903 v1.3.2 only: the EN 319 132-1 ones in the
// xades141 namespace (ArchiveTimeStamp, TimeStampValidationData) are listed, then taken out
// before xadesjs reads the rest (they are unsigned: the core verification does not cover them).
//
//   node verify.mjs SIGNATURE.xml [DETACHED-CONTENT]
import { readFileSync } from "node:fs";
import { webcrypto } from "node:crypto";
import { DOMParser, XMLSerializer } from "@xmldom/xmldom";
import * as XmlCore from "xml-core";
import * as xadesjs from "xadesjs";
import * as XmlDSigJs from "xmldsigjs";

XmlCore.setNodeDependencies({ DOMParser, XMLSerializer });
xadesjs.Application.setEngine("NodeJS", webcrypto);

const [file, detached] = process.argv.slice(2);
const doc = xadesjs.Parse(readFileSync(file, "utf8"));
const [element] = Array.from(doc.getElementsByTagNameNS("http://www.w3.org/2000/09/xmldsig#", "Signature"));
const xades141 = Array.from(element.getElementsByTagNameNS("http://uri.etsi.org/01903/v1.4.1#", "*"))
  .filter((e) => e.parentNode.localName === "UnsignedSignatureProperties");
const later = xades141.map((e) => `xades141:${e.localName}`);
xades141.forEach((e) => e.parentNode.removeChild(e));
const signed = new xadesjs.SignedXml(doc);
signed.LoadXml(element);
if (detached) {
  const content = new Uint8Array(readFileSync(detached));
  signed.contentHandler = async (reference) => (reference.Uri && !reference.Uri.startsWith("#") ? content : null);
}
// The key of the certificate SigningCertificateV2 names (xmldsigjs alone tries every KeyInfo
// certificate's key with the signature method, and fails on a chain whose CAs use another key type).
async function signingKey() {
  const v2 = signed.Properties.SignedProperties.SignedSignatureProperties.SigningCertificateV2;
  if (!v2.Count) return null;
  const wanted = XmlCore.Convert.ToBase64(v2.Item(0).CertDigest.DigestValue);
  const certs = [];
  signed.XmlSignature.KeyInfo.ForEach((item) => {
    if (item instanceof XmlDSigJs.KeyInfoX509Data) certs.push(...item.Certificates);
  });
  for (const cert of certs) {
    if (XmlCore.Convert.ToBase64(new Uint8Array(await cert.Thumbprint("SHA-256"))) === wanted) {
      const key = await cert.exportKey({ ...signed.Algorithm });
      if (key.algorithm.namedCurve) { // xmldsigjs re-imports the key with the signature's algorithm
        signed.Algorithm = { ...signed.Algorithm, namedCurve: key.algorithm.namedCurve };
      }
      return key;
    }
  }
  return null;
}

let valid, error = null;
try {
  const key = await signingKey();
  valid = key ? await signed.Verify({ key }) : await signed.Verify();
} catch (e) { // xmldsigjs throws on a digest that does not match
  valid = false;
  error = e.message;
}
const sp = signed.Properties.SignedProperties;
const ssp = sp.SignedSignatureProperties;
const usp = signed.Properties.UnsignedProperties.UnsignedSignatureProperties;
const v2 = ssp.SigningCertificateV2.Count ? ssp.SigningCertificateV2.Item(0) : null;
const names = [];
usp.ForEach((p) => names.push(p.localName));
names.push(...later);
const formats = [];
sp.SignedDataObjectProperties.DataObjectFormats.ForEach((f) => formats.push([f.ObjectReference, f.MimeType]));
console.log(JSON.stringify({
  valid,
  error,
  signingTime: ssp.SigningTime.Value ? ssp.SigningTime.Value.toISOString() : null,
  certDigest: v2 ? {
    algorithm: v2.CertDigest.DigestMethod.Algorithm,
    value: XmlCore.Convert.ToBase64(v2.CertDigest.DigestValue),
  } : null,
  issuerSerialV2: v2 && v2.IssuerSerial ? XmlCore.Convert.ToBase64(v2.IssuerSerial) : null,
  dataObjectFormats: formats,
  unsigned: names,
}));
