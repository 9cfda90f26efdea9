//! Webhooks, the parts both the API (creating subscriptions) and the notifier (delivering)
//! need: which target addresses are allowed (`address.rs`, the SSRF rules), parsing and
//! resolving target URLs under those rules and the delivery HTTP client (`target.rs`), and
//! signatures and per-subscription secrets (`signature.rs`). Nothing here logs a URL, a body
//! or a secret.

mod address;
mod signature;
mod target;

pub use address::{classify, AddressClass};
pub use signature::{
    sign, verify, SecretKey, SignatureError, MIN_KEY_BYTES, SECRET_PREFIX, SIGNATURE_HEADER,
};
pub use target::{
    check_literal, delivery_client, resolve_checked, GuardedResolver, TargetError, WebhookUrl,
    RESOLVE_TIMEOUT,
};
