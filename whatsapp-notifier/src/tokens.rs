//! Which access token a message is sent with: its business number's.
//!
//! - the platform's shared number (`whatsapp_numbers.tenant_id` NULL): the platform token
//!   (`LOYALTY_WHATSAPP_ACCESS_TOKEN`);
//! - a tenant's own number: that tenant's token, sealed in `whatsapp_numbers` (migration V7,
//!   `PUT /v1/whatsapp/number`) and opened here with the vault, in memory, for this send;
//! - anything else has **no usable token** and the send fails permanently with the reason:
//!   a number not (or no longer) registered, an own number without a token, a message of
//!   another tenant than the number's, a token that does not open. Never the platform token
//!   in their place, and never another tenant's.
//!
//! The claim reads the number's row with each message, so a token rotated by a PUT is used
//! from the next claimed message on, and a detached number's messages fail at once: no cache
//! to go stale (opening is two AES-GCM decryptions of a few hundred bytes).

use crate::meta::AccessToken;
use ledger_core::TenantId;
use uuid::Uuid;
use vault::{SealedRecord, Vault};

/// The business number of a claimed message, as `whatsapp_numbers` has it.
#[derive(Clone, PartialEq, Eq)]
pub enum SendingNumber {
    /// No row: never registered, or detached since the message was queued.
    NotRegistered,
    /// The platform's shared number.
    Shared,
    /// A tenant's own number, with its sealed token if one was set.
    Own {
        tenant: Uuid,
        token: Option<SealedRecord>,
    },
}

impl std::fmt::Debug for SendingNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendingNumber::NotRegistered => f.write_str("NotRegistered"),
            SendingNumber::Shared => f.write_str("Shared"),
            SendingNumber::Own { tenant, token } => f
                .debug_struct("Own")
                .field("tenant", tenant)
                .field("token_set", &token.is_some())
                .finish(),
        }
    }
}

/// Why a message has no usable token (recorded as the failed row's `detail`).
pub const NOT_REGISTERED: &str =
    "no usable access token: the business number is not registered (or was detached)";
pub const NO_TOKEN: &str = "no usable access token: the tenant's own number has no access token (set one with PUT /v1/whatsapp/number)";
pub const OTHER_TENANT: &str =
    "no usable access token: the message's tenant does not own the business number";
pub const DOES_NOT_OPEN: &str =
    "no usable access token: the number's sealed token does not open (master key missing?)";

/// The token for a message of `message_tenant` sent from `number`.
pub fn token_for(
    number: &SendingNumber,
    phone_number_id: &str,
    message_tenant: Option<Uuid>,
    platform: &AccessToken,
    vault: &Vault,
) -> Result<AccessToken, &'static str> {
    match number {
        SendingNumber::NotRegistered => Err(NOT_REGISTERED),
        SendingNumber::Shared => Ok(platform.clone()),
        SendingNumber::Own { tenant, token } => {
            if message_tenant.is_some_and(|t| t != *tenant) {
                return Err(OTHER_TENANT);
            }
            let sealed = token.as_ref().ok_or(NO_TOKEN)?;
            let context = schema::whatsapp_numbers::token_seal_context(
                phone_number_id,
                TenantId::from_uuid(*tenant),
            );
            let plain = vault
                .open_record(&context, sealed)
                .map_err(|_| DOES_NOT_OPEN)?;
            let text = String::from_utf8(plain).map_err(|_| DOES_NOT_OPEN)?;
            AccessToken::parse(&text).map_err(|_| DOES_NOT_OPEN)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> Vault {
        let key = vault::generate_key_base64().unwrap();
        let index = vault::generate_key_base64().unwrap();
        Vault::from_config(&format!("m1:{key}"), &index).unwrap()
    }

    fn own(vault: &Vault, tenant: Uuid, number: &str, token: &str) -> SendingNumber {
        let context =
            schema::whatsapp_numbers::token_seal_context(number, TenantId::from_uuid(tenant));
        SendingNumber::Own {
            tenant,
            token: Some(vault.seal_record(&context, token.as_bytes()).unwrap()),
        }
    }

    /// The token as the `Authorization` header would carry it (only visible in this crate).
    fn plain(token: &AccessToken) -> &str {
        token.expose()
    }

    #[test]
    fn each_number_gets_its_own_token_and_nothing_else() {
        let vault = vault();
        let platform = AccessToken::parse("platform-token").unwrap();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let number = own(&vault, a, "200000000000001", "tenant-a-token");

        let shared = token_for(&SendingNumber::Shared, "100", None, &platform, &vault).unwrap();
        assert_eq!(plain(&shared), "platform-token");
        let mine = token_for(&number, "200000000000001", Some(a), &platform, &vault).unwrap();
        assert_eq!(plain(&mine), "tenant-a-token");
        let unscoped = token_for(&number, "200000000000001", None, &platform, &vault).unwrap();
        assert_eq!(plain(&unscoped), "tenant-a-token");

        let refused = |number: &SendingNumber, id: &str, tenant| {
            token_for(number, id, tenant, &platform, &vault).unwrap_err()
        };
        assert_eq!(refused(&number, "200000000000001", Some(b)), OTHER_TENANT);
        assert_eq!(
            refused(&SendingNumber::NotRegistered, "1", Some(a)),
            NOT_REGISTERED
        );
        let without = SendingNumber::Own {
            tenant: a,
            token: None,
        };
        assert_eq!(refused(&without, "200000000000001", Some(a)), NO_TOKEN);
        // A sealed token copied to another number, or read as another tenant's, does not open.
        assert_eq!(refused(&number, "200000000000009", Some(a)), DOES_NOT_OPEN);
        let SendingNumber::Own { token, .. } = number.clone() else {
            unreachable!()
        };
        let moved = SendingNumber::Own { tenant: b, token };
        assert_eq!(refused(&moved, "200000000000001", Some(b)), DOES_NOT_OPEN);
        // Debug never shows the sealed bytes or the token.
        assert!(!format!("{number:?}").contains("tenant-a-token"));
        assert_eq!(format!("{mine:?}"), "AccessToken(<redacted>)");
    }
}
