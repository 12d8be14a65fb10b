// Passkey ceremonies for rssp's pages (consent, registration). No dependencies, no inline code:
// the page carries the WebAuthn options as a JSON data block (#passkey-options, data-mode
// "get" or "create"), a button #passkey and a hidden input #passkey-response that receives the
// browser's answer as JSON, which the form posts to the server. The server checks everything.
"use strict";
(function () {
  function fromB64url(text) {
    const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer;
  }
  function toB64url(buffer) {
    let text = "";
    new Uint8Array(buffer).forEach((b) => { text += String.fromCharCode(b); });
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function publicKey(options, mode) {
    options.challenge = fromB64url(options.challenge);
    (options.allowCredentials || []).forEach((c) => { c.id = fromB64url(c.id); });
    (options.excludeCredentials || []).forEach((c) => { c.id = fromB64url(c.id); });
    if (mode === "create") { options.user.id = fromB64url(options.user.id); }
    return options;
  }
  function answer(credential) {
    const r = credential.response, out = {};
    ["clientDataJSON", "authenticatorData", "signature", "userHandle", "attestationObject"].forEach((name) => {
      if (r[name]) { out[name] = toB64url(r[name]); }
    });
    if (typeof r.getTransports === "function") { out.transports = r.getTransports(); }
    return JSON.stringify({id: credential.id, rawId: toB64url(credential.rawId), type: credential.type,
                           response: out, clientExtensionResults: credential.getClientExtensionResults(),
                           authenticatorAttachment: credential.authenticatorAttachment || undefined});
  }
  function start() {
    const block = document.getElementById("passkey-options");
    const button = document.getElementById("passkey");
    const field = document.getElementById("passkey-response");
    const status = document.getElementById("passkey-status");
    if (!block || !button || !field) { return; }
    const mode = block.dataset.mode;
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const options = publicKey(JSON.parse(block.textContent), mode);
        const credential = mode === "create" ? await navigator.credentials.create({publicKey: options})
                                             : await navigator.credentials.get({publicKey: options});
        field.value = answer(credential);
        if (status) { status.textContent = status.dataset.done; status.dataset.state = "done"; }
        if (mode === "create") { field.form.submit(); }
      } catch (err) {
        if (status) { status.textContent = status.dataset.failed; status.dataset.state = "failed"; }
        button.disabled = false;
      }
    });
  }
  document.addEventListener("DOMContentLoaded", start);
})();
