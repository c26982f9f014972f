//! Personal-data protection (SPEC §7): what is encrypted, with which key, and how a phone
//! number is found without being stored.
//!
//! - Each customer has a **data key** (256-bit, random). Their personal data (phone number,
//!   name) is sealed with it (AES-256-GCM, 96-bit random nonce) into the `CustomerEnrolled`
//!   event. The associated data binds a ciphertext to its tenant and customer, so it cannot
//!   be moved to another customer's record and still open.
//! - The data key is stored only **wrapped** (AES-256-GCM) by a **master key** from the
//!   environment, named by an id so master keys can rotate: the first configured key wraps
//!   new data keys; every configured key can unwrap.
//! - Deleting the wrapped data key is the erasure (crypto-shredding): every copy of the
//!   sealed data, in the event table, JetStream and backups, becomes unreadable at once.
//! - A phone number is looked up by its **blind index**: HMAC-SHA256 under a separate key of
//!   the tenant id and the E.164 number. Without the key the index reveals nothing; with it,
//!   an attacker still has to guess numbers one by one (which is why the key is a secret and
//!   the index is never written into an event).
//!
//! Keys never appear in `Debug` output.

pub mod audit;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ledger_core::command::{PhoneIndex, WrappedDataKey};
use ledger_core::events::SealedPersonalData;
use ledger_core::{CustomerId, PhoneNumber, TenantId};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Bytes in every key: data keys, master keys and the blind-index key.
pub const KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("LOYALTY_MASTER_KEYS is empty: set at least one `id:base64-key`")]
    NoMasterKey,
    #[error("master key entry {0} is not `id:base64-key` with an id of 1 to 64 letters, digits, '-' or '_'")]
    MasterKeyEntry(usize),
    #[error("master key {0:?} is named twice")]
    DuplicateMasterKey(String),
    #[error("{what} must be {KEY_BYTES} bytes encoded in base64")]
    KeyLength { what: String },
    #[error("no randomness available")]
    Random,
    #[error("the data key is wrapped by master key {0:?}, which is not configured")]
    UnknownMasterKey(String),
    /// Wrong key, or bytes that were altered or belong to another customer.
    #[error("decryption failed")]
    Decryption,
    #[error("the personal data does not decode")]
    Format,
}

/// A customer's personal data, as sealed into their `CustomerEnrolled` event.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalData {
    pub phone: PhoneNumber,
    pub name: Option<String>,
}

impl std::fmt::Debug for PersonalData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersonalData(<redacted>)")
    }
}

/// A record sealed under its own data key ([`Vault::seal_record`]): the wrapped data key and
/// the sealed bytes (`nonce ‖ ciphertext ‖ tag`), stored side by side.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedRecord {
    pub master_key_id: String,
    pub wrapped_key: Vec<u8>,
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for SealedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedRecord")
            .field("master_key_id", &self.master_key_id)
            .field("sealed_bytes", &self.sealed.len())
            .finish_non_exhaustive()
    }
}

/// A customer's data key in the clear: lives only in memory, for one operation.
pub struct DataKey([u8; KEY_BYTES]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// The master keys and the blind-index key: everything needed to protect and read
/// personal data.
pub struct Vault {
    current_master: String,
    masters: HashMap<String, LessSafeKey>,
    blind_index: hmac::Key,
    random: SystemRandom,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("current_master", &self.current_master)
            .field("master_key_ids", &self.masters.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// From the environment's forms: `master_keys` is `id:base64,id:base64,…` (the first
    /// wraps new data keys), `blind_index_key` is base64. Each key is 32 bytes.
    pub fn from_config(master_keys: &str, blind_index_key: &str) -> Result<Self, VaultError> {
        let mut masters = HashMap::new();
        let mut current_master = None;
        for (position, entry) in master_keys
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let (id, encoded) = entry
                .split_once(':')
                .filter(|(id, _)| is_key_id(id))
                .ok_or(VaultError::MasterKeyEntry(position + 1))?;
            let bytes = decode_key(encoded, &format!("master key {id:?}"))?;
            let key = aes_key(&bytes)?;
            if masters.insert(id.to_owned(), key).is_some() {
                return Err(VaultError::DuplicateMasterKey(id.to_owned()));
            }
            current_master.get_or_insert_with(|| id.to_owned());
        }
        let current_master = current_master.ok_or(VaultError::NoMasterKey)?;
        let blind_index_bytes = decode_key(blind_index_key, "the blind-index key")?;
        Ok(Vault {
            current_master,
            masters,
            blind_index: hmac::Key::new(hmac::HMAC_SHA256, &blind_index_bytes),
            random: SystemRandom::new(),
        })
    }

    /// The id of the master key that wraps new data keys.
    pub fn current_master_key_id(&self) -> &str {
        &self.current_master
    }

    /// The keyed blind index of a phone number at a tenant. The tenant id is part of the
    /// input so the same person at two vendors has unrelated indexes.
    pub fn phone_index(&self, tenant: TenantId, phone: &PhoneNumber) -> PhoneIndex {
        let mut context = hmac::Context::with_key(&self.blind_index);
        context.update(b"loyalty-phone-index-v1\0");
        context.update(tenant.as_uuid().as_bytes());
        context.update(phone.as_str().as_bytes());
        let tag = context.sign();
        let mut index = [0u8; 32];
        index.copy_from_slice(tag.as_ref());
        PhoneIndex(index)
    }

    /// A new random data key and its wrapped form for `customer`.
    pub fn new_data_key(
        &self,
        tenant: TenantId,
        customer: CustomerId,
    ) -> Result<(DataKey, WrappedDataKey), VaultError> {
        let mut key = [0u8; KEY_BYTES];
        self.random.fill(&mut key).map_err(|_| VaultError::Random)?;
        let wrapped = self.wrap(&DataKey(key), tenant, customer)?;
        Ok((DataKey(key), wrapped))
    }

    /// Wraps a data key under the current master key (also used to re-wrap after a master
    /// key rotation).
    pub fn wrap(
        &self,
        data_key: &DataKey,
        tenant: TenantId,
        customer: CustomerId,
    ) -> Result<WrappedDataKey, VaultError> {
        let master = &self.masters[&self.current_master];
        let bytes = self.seal_bytes(
            master,
            &wrap_context(tenant, customer, &self.current_master),
            &data_key.0,
        )?;
        Ok(WrappedDataKey {
            master_key_id: self.current_master.clone(),
            bytes,
        })
    }

    pub fn unwrap(
        &self,
        wrapped: &WrappedDataKey,
        tenant: TenantId,
        customer: CustomerId,
    ) -> Result<DataKey, VaultError> {
        let master = self
            .masters
            .get(&wrapped.master_key_id)
            .ok_or_else(|| VaultError::UnknownMasterKey(wrapped.master_key_id.clone()))?;
        let plain = open_bytes(
            master,
            &wrap_context(tenant, customer, &wrapped.master_key_id),
            &wrapped.bytes,
        )?;
        let key: [u8; KEY_BYTES] = plain.try_into().map_err(|_| VaultError::Decryption)?;
        Ok(DataKey(key))
    }

    /// Seals a customer's personal data under their data key.
    pub fn seal(
        &self,
        data_key: &DataKey,
        tenant: TenantId,
        customer: CustomerId,
        personal: &PersonalData,
    ) -> Result<SealedPersonalData, VaultError> {
        let plain = serde_json::to_vec(personal).map_err(|_| VaultError::Format)?;
        let key = aes_key(&data_key.0)?;
        let sealed = self.seal_bytes(&key, &personal_context(tenant, customer), &plain)?;
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        Ok(SealedPersonalData {
            nonce: nonce.to_vec(),
            ciphertext: ciphertext.to_vec(),
        })
    }

    pub fn open(
        &self,
        data_key: &DataKey,
        tenant: TenantId,
        customer: CustomerId,
        sealed: &SealedPersonalData,
    ) -> Result<PersonalData, VaultError> {
        let key = aes_key(&data_key.0)?;
        let joined = [sealed.nonce.as_slice(), sealed.ciphertext.as_slice()].concat();
        let plain = open_bytes(&key, &personal_context(tenant, customer), &joined)?;
        serde_json::from_slice(&plain).map_err(|_| VaultError::Format)
    }

    /// Seals a record that belongs to no customer yet (e.g. a WhatsApp webhook item, before
    /// it is routed to a tenant) under a **fresh data key of its own**, wrapped by the current
    /// master key. `context` names the record (e.g. its table and unique key) and is bound to
    /// both the sealed bytes and the wrapped key as associated data, so neither can be moved
    /// to another record and still open. Deleting the record's wrapped key shreds it.
    pub fn seal_record(&self, context: &[u8], plain: &[u8]) -> Result<SealedRecord, VaultError> {
        let mut key = [0u8; KEY_BYTES];
        self.random.fill(&mut key).map_err(|_| VaultError::Random)?;
        let data_key = aes_key(&key)?;
        let sealed = self.seal_bytes(&data_key, &record_context(context), plain)?;
        let master = &self.masters[&self.current_master];
        let wrapped_key = self.seal_bytes(
            master,
            &record_wrap_context(context, &self.current_master),
            &key,
        )?;
        Ok(SealedRecord {
            master_key_id: self.current_master.clone(),
            wrapped_key,
            sealed,
        })
    }

    /// Opens what [`Vault::seal_record`] sealed under the same `context`.
    pub fn open_record(
        &self,
        context: &[u8],
        record: &SealedRecord,
    ) -> Result<Vec<u8>, VaultError> {
        let master = self
            .masters
            .get(&record.master_key_id)
            .ok_or_else(|| VaultError::UnknownMasterKey(record.master_key_id.clone()))?;
        let key = open_bytes(
            master,
            &record_wrap_context(context, &record.master_key_id),
            &record.wrapped_key,
        )?;
        let data_key = aes_key(&key)?;
        open_bytes(&data_key, &record_context(context), &record.sealed)
    }

    /// Wraps a sealed record's data key ([`Vault::seal_record`]) again under the current
    /// master key, for a master key rotation: `wrapped` is the record's `master_key_id` and
    /// `wrapped_key` as stored. The sealed bytes stay as they are (their data key does not
    /// change), so only the wrapped key and its master key id are written back. Fails like
    /// [`Vault::open_record`] when the old master key is not configured or the wrapped key
    /// does not open under `context`.
    pub fn rewrap_record_key(
        &self,
        context: &[u8],
        wrapped: &WrappedDataKey,
    ) -> Result<WrappedDataKey, VaultError> {
        let old_master = self
            .masters
            .get(&wrapped.master_key_id)
            .ok_or_else(|| VaultError::UnknownMasterKey(wrapped.master_key_id.clone()))?;
        let key = open_bytes(
            old_master,
            &record_wrap_context(context, &wrapped.master_key_id),
            &wrapped.bytes,
        )?;
        let master = &self.masters[&self.current_master];
        let bytes = self.seal_bytes(
            master,
            &record_wrap_context(context, &self.current_master),
            &key,
        )?;
        Ok(WrappedDataKey {
            master_key_id: self.current_master.clone(),
            bytes,
        })
    }

    /// A keyed digest (HMAC-SHA256 under the blind-index key) of an identifier that must be
    /// matched or de-duplicated without being stored, e.g. a WhatsApp message id (whose
    /// base64 body carries the customer's phone number). `purpose` separates the domains, so
    /// the same bytes digested for two purposes give unrelated values, and none equals a
    /// phone index.
    pub fn keyed_digest(&self, purpose: &str, bytes: &[u8]) -> [u8; 32] {
        let mut context = hmac::Context::with_key(&self.blind_index);
        context.update(b"loyalty-digest-v1\0");
        context.update(purpose.as_bytes());
        context.update(b"\0");
        context.update(bytes);
        let mut digest = [0u8; 32];
        digest.copy_from_slice(context.sign().as_ref());
        digest
    }

    /// `nonce ‖ ciphertext ‖ tag`.
    fn seal_bytes(
        &self,
        key: &LessSafeKey,
        context: &[u8],
        plain: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| VaultError::Random)?;
        let mut in_out = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context),
            &mut in_out,
        )
        .map_err(|_| VaultError::Decryption)?;
        Ok([nonce.as_slice(), in_out.as_slice()].concat())
    }
}

fn open_bytes(key: &LessSafeKey, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
    if sealed.len() < NONCE_LEN {
        return Err(VaultError::Decryption);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| VaultError::Decryption)?;
    let mut in_out = ciphertext.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(context), &mut in_out)
        .map_err(|_| VaultError::Decryption)?;
    Ok(plain.to_vec())
}

fn record_context(context: &[u8]) -> Vec<u8> {
    [b"loyalty-record-v1\0".as_slice(), context].concat()
}

fn record_wrap_context(context: &[u8], master_key_id: &str) -> Vec<u8> {
    [
        b"loyalty-record-key-v1\0".as_slice(),
        context,
        b"\0",
        master_key_id.as_bytes(),
    ]
    .concat()
}

fn personal_context(tenant: TenantId, customer: CustomerId) -> Vec<u8> {
    [
        b"loyalty-personal-data-v1\0".as_slice(),
        tenant.as_uuid().as_bytes(),
        customer.as_uuid().as_bytes(),
    ]
    .concat()
}

fn wrap_context(tenant: TenantId, customer: CustomerId, master_key_id: &str) -> Vec<u8> {
    [
        b"loyalty-data-key-v1\0".as_slice(),
        tenant.as_uuid().as_bytes(),
        customer.as_uuid().as_bytes(),
        master_key_id.as_bytes(),
    ]
    .concat()
}

fn aes_key(bytes: &[u8]) -> Result<LessSafeKey, VaultError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| VaultError::KeyLength {
            what: "a key".into(),
        })
}

fn decode_key(encoded: &str, what: &str) -> Result<[u8; KEY_BYTES], VaultError> {
    BASE64
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| <[u8; KEY_BYTES]>::try_from(bytes).ok())
        .ok_or_else(|| VaultError::KeyLength {
            what: what.to_owned(),
        })
}

fn is_key_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A fresh random key in the environment's base64 form: for `scripts/run-local.sh`, tests
/// and `loyalty keys generate`.
pub fn generate_key_base64() -> Result<String, VaultError> {
    let mut key = [0u8; KEY_BYTES];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| VaultError::Random)?;
    Ok(BASE64.encode(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn tenant(n: u8) -> TenantId {
        TenantId::from_uuid(Uuid::from_bytes([n; 16]))
    }

    fn customer(n: u8) -> CustomerId {
        CustomerId::from_uuid(Uuid::from_bytes([n; 16]))
    }

    fn key(byte: u8) -> String {
        BASE64.encode([byte; KEY_BYTES])
    }

    fn vault(masters: &str) -> Vault {
        Vault::from_config(masters, &key(9)).unwrap()
    }

    fn personal() -> PersonalData {
        PersonalData {
            phone: PhoneNumber::parse("+2348012345678").unwrap(),
            name: Some("Ada Obi".into()),
        }
    }

    #[test]
    fn records_round_trip_under_their_own_key_and_only_in_their_context() {
        let sealing = vault(&format!("k1:{}", key(1)));
        let plain = br#"{"from":"2348012345678","text":{"body":"points"}}"#;
        let sealed = sealing.seal_record(b"inbox\0msg:1", plain).unwrap();
        assert!(!sealed.sealed.windows(13).any(|w| w == b"2348012345678"));
        assert_eq!(sealed.master_key_id, "k1");
        assert_eq!(
            sealing.open_record(b"inbox\0msg:1", &sealed).unwrap(),
            plain.to_vec()
        );
        assert_eq!(
            sealing.open_record(b"inbox\0msg:2", &sealed),
            Err(VaultError::Decryption)
        );
        // A fresh data key per record: the same plaintext seals differently.
        let again = sealing.seal_record(b"inbox\0msg:1", plain).unwrap();
        assert_ne!(again.wrapped_key, sealed.wrapped_key);
        // Rotation: a vault with a newer master key still opens it.
        let rotated = vault(&format!("k2:{},k1:{}", key(2), key(1)));
        assert_eq!(
            rotated.open_record(b"inbox\0msg:1", &sealed).unwrap(),
            plain.to_vec()
        );
    }

    #[test]
    fn a_record_key_rewraps_under_the_current_master_and_the_sealed_bytes_still_open() {
        let plain = b"2348012345678";
        let sealed = vault(&format!("k1:{}", key(1)))
            .seal_record(b"outbox\0reply:1", plain)
            .unwrap();
        let wrapped = WrappedDataKey {
            master_key_id: sealed.master_key_id.clone(),
            bytes: sealed.wrapped_key.clone(),
        };
        let rotating = vault(&format!("k2:{},k1:{}", key(2), key(1)));
        let rewrapped = rotating
            .rewrap_record_key(b"outbox\0reply:1", &wrapped)
            .unwrap();
        assert_eq!(rewrapped.master_key_id, "k2");
        let moved = SealedRecord {
            master_key_id: rewrapped.master_key_id.clone(),
            wrapped_key: rewrapped.bytes.clone(),
            sealed: sealed.sealed.clone(),
        };
        let retired = vault(&format!("k2:{}", key(2)));
        assert_eq!(
            retired.open_record(b"outbox\0reply:1", &moved).unwrap(),
            plain.to_vec()
        );
        assert_eq!(
            retired.rewrap_record_key(b"outbox\0reply:1", &wrapped),
            Err(VaultError::UnknownMasterKey("k1".into()))
        );
        // Bound to its context: the key of another record does not re-wrap.
        assert_eq!(
            rotating.rewrap_record_key(b"outbox\0reply:2", &wrapped),
            Err(VaultError::Decryption)
        );
    }

    #[test]
    fn keyed_digests_separate_purposes_and_depend_on_the_key() {
        let one = vault(&format!("k1:{}", key(1)));
        let other = Vault::from_config(&format!("k1:{}", key(1)), &key(8)).unwrap();
        let digest = one.keyed_digest("wamid", b"wamid.abc");
        assert_eq!(digest, one.keyed_digest("wamid", b"wamid.abc"));
        assert_ne!(digest, one.keyed_digest("wa_id", b"wamid.abc"));
        assert_ne!(digest, one.keyed_digest("wamid", b"wamid.abd"));
        assert_ne!(digest, other.keyed_digest("wamid", b"wamid.abc"));
    }

    #[test]
    fn personal_data_round_trips_through_a_wrapped_data_key() {
        let vault = vault(&format!("k1:{}", key(1)));
        let (data_key, wrapped) = vault.new_data_key(tenant(1), customer(2)).unwrap();
        let sealed = vault
            .seal(&data_key, tenant(1), customer(2), &personal())
            .unwrap();
        assert!(!sealed.ciphertext.windows(13).any(|w| w == b"2348012345678"));
        let unwrapped = vault.unwrap(&wrapped, tenant(1), customer(2)).unwrap();
        let opened = vault
            .open(&unwrapped, tenant(1), customer(2), &sealed)
            .unwrap();
        assert_eq!(opened, personal());
    }

    #[test]
    fn sealed_data_opens_only_for_its_own_tenant_and_customer() {
        let vault = vault(&format!("k1:{}", key(1)));
        let (data_key, wrapped) = vault.new_data_key(tenant(1), customer(2)).unwrap();
        let sealed = vault
            .seal(&data_key, tenant(1), customer(2), &personal())
            .unwrap();
        assert_eq!(
            vault.open(&data_key, tenant(3), customer(2), &sealed),
            Err(VaultError::Decryption)
        );
        assert_eq!(
            vault.open(&data_key, tenant(1), customer(4), &sealed),
            Err(VaultError::Decryption)
        );
        assert!(vault.unwrap(&wrapped, tenant(1), customer(4)).is_err());
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(
            vault.open(&data_key, tenant(1), customer(2), &tampered),
            Err(VaultError::Decryption)
        );
        let (other_key, _) = vault.new_data_key(tenant(1), customer(2)).unwrap();
        assert_eq!(
            vault.open(&other_key, tenant(1), customer(2), &sealed),
            Err(VaultError::Decryption)
        );
    }

    #[test]
    fn sealing_twice_gives_different_ciphertexts() {
        let vault = vault(&format!("k1:{}", key(1)));
        let (data_key, _) = vault.new_data_key(tenant(1), customer(2)).unwrap();
        let a = vault
            .seal(&data_key, tenant(1), customer(2), &personal())
            .unwrap();
        let b = vault
            .seal(&data_key, tenant(1), customer(2), &personal())
            .unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn master_keys_rotate_old_keys_still_unwrap_new_keys_wrap() {
        let old = vault(&format!("k1:{}", key(1)));
        let (data_key, wrapped_by_old) = old.new_data_key(tenant(1), customer(2)).unwrap();
        let rotated = vault(&format!("k2:{}, k1:{}", key(2), key(1)));
        assert_eq!(rotated.current_master_key_id(), "k2");
        let unwrapped = rotated
            .unwrap(&wrapped_by_old, tenant(1), customer(2))
            .unwrap();
        assert_eq!(unwrapped.0, data_key.0);
        let rewrapped = rotated.wrap(&unwrapped, tenant(1), customer(2)).unwrap();
        assert_eq!(rewrapped.master_key_id, "k2");
        let retired = vault(&format!("k2:{}", key(2)));
        assert_eq!(
            retired
                .unwrap(&wrapped_by_old, tenant(1), customer(2))
                .err(),
            Some(VaultError::UnknownMasterKey("k1".into()))
        );
        assert!(retired.unwrap(&rewrapped, tenant(1), customer(2)).is_ok());
    }

    #[test]
    fn the_blind_index_is_stable_keyed_and_per_tenant() {
        let phone = PhoneNumber::parse("+2348012345678").unwrap();
        let a = vault(&format!("k1:{}", key(1)));
        assert_eq!(
            a.phone_index(tenant(1), &phone),
            a.phone_index(tenant(1), &phone)
        );
        assert_ne!(
            a.phone_index(tenant(1), &phone),
            a.phone_index(tenant(2), &phone)
        );
        let other_phone = PhoneNumber::parse("+2348012345679").unwrap();
        assert_ne!(
            a.phone_index(tenant(1), &phone),
            a.phone_index(tenant(1), &other_phone)
        );
        let other_key = Vault::from_config(&format!("k1:{}", key(1)), &key(8)).unwrap();
        assert_ne!(
            a.phone_index(tenant(1), &phone),
            other_key.phone_index(tenant(1), &phone)
        );
    }

    #[test]
    fn bad_configuration_is_refused_with_a_reason() {
        let good = key(1);
        let cases = [
            ("", VaultError::NoMasterKey),
            (" , ", VaultError::NoMasterKey),
            (good.as_str(), VaultError::MasterKeyEntry(1)),
            (&format!(":{good}"), VaultError::MasterKeyEntry(1)),
            (&format!("k 1:{good}"), VaultError::MasterKeyEntry(1)),
            (
                &format!("k1:{}", BASE64.encode([1u8; 16])),
                VaultError::KeyLength {
                    what: "master key \"k1\"".into(),
                },
            ),
            (
                "k1:not base64!",
                VaultError::KeyLength {
                    what: "master key \"k1\"".into(),
                },
            ),
            (
                &format!("k1:{good},k1:{good}"),
                VaultError::DuplicateMasterKey("k1".into()),
            ),
        ];
        for (masters, expected) in cases {
            assert_eq!(
                Vault::from_config(masters, &key(9)).err(),
                Some(expected),
                "{masters}"
            );
        }
        assert!(matches!(
            Vault::from_config(&format!("k1:{good}"), "short"),
            Err(VaultError::KeyLength { .. })
        ));
    }

    #[test]
    fn debug_output_never_shows_keys_or_personal_data() {
        let vault = vault(&format!("k1:{}", key(1)));
        let (data_key, _) = vault.new_data_key(tenant(1), customer(2)).unwrap();
        let shown = format!("{vault:?} {data_key:?} {:?}", personal());
        assert!(!shown.contains(&key(1)) && !shown.contains("2348012345678"));
    }
}
