//! The audit export's format (docs/AUDIT.md) and its offline verification (issue #6,
//! items 2 and 3): no database, no IO — [`verify_lines`] takes the file's lines and a
//! signature check, so the command and the tests share it.
//!
//! What is checked, in file order, stopping at the first failure: the header; each event
//! line's fields, its sequence (1, 2, 3… without gaps), its link to the previous line and
//! its hash over its own contents (`ledger_core::chain`); its payload decodes
//! (`ledger_core::codec`). Then the trailer: the count of events, and the signed head — its
//! tenant, that it names an event of the file with that event's hash, and its Ed25519
//! signature over `signed_head_message`. Events after the signed head are reported as not
//! covered by a signature, which is not a failure. Customer streams are replayed through
//! `evolve` for the summary.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ledger_core::books::{Books, Movements, Worth};
use ledger_core::chain::{
    signed_head_message, ChainBreak, ChainFields, ChainHash, ChainVerifier, StoredLink,
};
use ledger_core::{CustomerState, EventId, Points, StreamId, TenantId};
use serde::Deserialize;
use std::borrow::Cow;
use uuid::Uuid;

// The format's types are the exporter's (`schema::audit`), so writer and reader cannot drift.
pub use schema::audit::{EventLine, Header, SignedHeadLine, Trailer, FORMAT, FORMAT_VERSION};

/// The first failure found. Messages start with the first bad sequence when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("line {line}: {message}")]
    Malformed { line: usize, message: String },
    #[error("header: {0}")]
    Header(String),
    #[error("sequence {sequence}: {message}")]
    Event { sequence: u64, message: String },
    #[error("trailer: {0}")]
    Trailer(String),
    #[error("sequence {sequence}: missing from the file: the signed head names sequence {signed} but the file ends at {last}")]
    Truncated {
        sequence: u64,
        signed: u64,
        last: u64,
    },
    #[error("sequence {sequence}: the signed head {message}")]
    SignedHead { sequence: u64, message: String },
}

impl VerifyError {
    /// The first bad sequence, when the failure is at an event.
    pub fn sequence(&self) -> Option<u64> {
        match self {
            VerifyError::Event { sequence, .. }
            | VerifyError::Truncated { sequence, .. }
            | VerifyError::SignedHead { sequence, .. } => Some(*sequence),
            _ => None,
        }
    }

    fn event(sequence: u64, message: impl Into<String>) -> Self {
        VerifyError::Event {
            sequence,
            message: message.into(),
        }
    }
}

/// What a successful verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub tenant_id: Uuid,
    pub events: u64,
    /// The signed head's sequence (0 when none is signed): events up to it are covered by
    /// the signature, those after it only by the chain.
    pub signed_sequence: u64,
    pub key_id: Option<String>,
    pub customers: u64,
    pub earned: i64,
    pub redeemed: i64,
    pub expired: i64,
    pub reversed: i64,
    pub adjusted: i64,
    pub pending: i64,
    /// Σ customers' balances.
    pub outstanding: i64,
    /// The books (`ledger_core::books`, docs/BOOKS.md): points of open lots and what they
    /// are worth at each lot's own point value (the liability), and the money value of
    /// the movements since the start.
    pub liability: Worth,
    pub movements: Movements,
}

impl Summary {
    pub fn not_covered(&self) -> u64 {
        self.events - self.signed_sequence
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "tenant: {}", self.tenant_id)?;
        writeln!(f, "events: {} (chain intact)", self.events)?;
        match &self.key_id {
            Some(key_id) => writeln!(
                f,
                "signed head: sequence {} by {key_id} (signature valid)",
                self.signed_sequence
            )?,
            None => writeln!(f, "signed head: none")?,
        }
        if self.not_covered() > 0 {
            writeln!(
                f,
                "not covered by a signature: {} event(s) after sequence {}",
                self.not_covered(),
                self.signed_sequence
            )?;
        }
        writeln!(f, "customers: {}", self.customers)?;
        writeln!(f, "points issued (earned): {}", self.earned)?;
        writeln!(f, "points redeemed: {}", self.redeemed)?;
        writeln!(f, "points expired: {}", self.expired)?;
        writeln!(f, "points reversed: {}", self.reversed)?;
        writeln!(f, "points adjusted (net): {}", self.adjusted)?;
        writeln!(f, "points pending: {}", self.pending)?;
        writeln!(f, "outstanding balance: {}", self.outstanding)?;
        let unvalued = |worth: &Worth| match worth.unvalued_points {
            0 => String::new(),
            n => format!(" (+ {n} points of lots opened with no point value)"),
        };
        let money = |name: &str, worth: &Worth| {
            format!(
                "{name}: {} minor units for {} points{}",
                worth.minor,
                worth.points,
                unvalued(worth)
            )
        };
        writeln!(f, "{}", money("value issued", &self.movements.issued))?;
        writeln!(f, "{}", money("value redeemed", &self.movements.redeemed))?;
        writeln!(
            f,
            "{}",
            money("breakage (value expired)", &self.movements.expired)
        )?;
        writeln!(f, "{}", money("value reversed", &self.movements.reversed))?;
        writeln!(
            f,
            "{}",
            money("value adjusted (net)", &self.movements.adjusted)
        )?;
        write!(f, "{}", money("liability (open lots)", &self.liability))
    }
}

/// The value of each hex digit (either case), 0xFF for any other byte.
const HEX_DIGITS: [u8; 256] = {
    let mut table = [0xFF; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// 64 hex digits as 32 bytes. A table look-up per digit: two hashes a line made the `hex`
/// crate's decoder a tenth of the replay's time.
fn hash_from_hex(text: &str) -> Option<ChainHash> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (byte, pair) in hash.iter_mut().zip(digits.chunks_exact(2)) {
        let (high, low) = (HEX_DIGITS[pair[0] as usize], HEX_DIGITS[pair[1] as usize]);
        if (high | low) > 0x0F {
            return None;
        }
        *byte = (high << 4) | low;
    }
    Some(hash)
}

/// An event line as the verifier reads it: [`EventLine`]'s fields, the text ones borrowed
/// from the line (they hold no escapes, so nothing is copied) — replaying a million events
/// is mostly avoiding a million small allocations (docs/PERFORMANCE.md).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventLineRef<'a> {
    event_id: Uuid,
    tenant_sequence: u64,
    #[serde(borrow)]
    stream_id: Cow<'a, str>,
    version: u32,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    type_version: u16,
    recorded_at_micros: i64,
    #[serde(borrow)]
    metadata: Cow<'a, str>,
    #[serde(borrow)]
    payload: Cow<'a, str>,
    #[serde(borrow)]
    previous_hash: Cow<'a, str>,
    #[serde(borrow)]
    hash: Cow<'a, str>,
}

/// An event line in exactly the layout the exporter writes (its keys in order, no spaces,
/// no escapes), read by splitting at the quotes instead of by a JSON parser: the parser was
/// a fifth of the replay. `None` for anything else — which then goes to `serde_json`, so
/// what is accepted and every error message stay the parser's. Whatever is read here is
/// still checked downstream like the parser's result: the id and stream as UUIDs, metadata
/// and payload as base64, the hashes as hex, the type by the codec.
fn exporter_layout(text: &str) -> Option<EventLineRef<'_>> {
    /// The string value at the start of `rest` (after its opening quote), and what follows
    /// its closing quote.
    fn string(rest: &str) -> Option<(&str, &str)> {
        // One vectorised pass for the closing quote, refusing an escape on the way (an
        // escaped string is left to serde_json).
        let end = memchr::memchr2(b'"', b'\\', rest.as_bytes())?;
        if rest.as_bytes()[end] != b'"' {
            return None;
        }
        // A quote is ASCII, so both sides are on character boundaries.
        Some((&rest[..end], &rest[end + 1..]))
    }
    /// The unsigned integer at the start of `rest` (JSON's form: no sign, no leading zero).
    fn unsigned(rest: &str) -> Option<(u64, &str)> {
        let end = rest
            .bytes()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(rest.len());
        let digits = &rest[..end];
        if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
            return None;
        }
        Some((digits.parse().ok()?, &rest[end..]))
    }
    let rest = text.strip_prefix("{\"event_id\":\"")?;
    let (event_id, rest) = string(rest)?;
    let rest = rest.strip_prefix(",\"tenant_sequence\":")?;
    let (tenant_sequence, rest) = unsigned(rest)?;
    let rest = rest.strip_prefix(",\"stream_id\":\"")?;
    let (stream_id, rest) = string(rest)?;
    let rest = rest.strip_prefix(",\"version\":")?;
    let (version, rest) = unsigned(rest)?;
    let rest = rest.strip_prefix(",\"event_type\":\"")?;
    let (event_type, rest) = string(rest)?;
    let rest = rest.strip_prefix(",\"type_version\":")?;
    let (type_version, rest) = unsigned(rest)?;
    let rest = rest.strip_prefix(",\"recorded_at_micros\":")?;
    let (negative, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let (micros, rest) = unsigned(rest)?;
    let recorded_at_micros = if negative {
        0i64.checked_sub_unsigned(micros)?
    } else {
        i64::try_from(micros).ok()?
    };
    let rest = rest.strip_prefix(",\"metadata\":\"")?;
    let (metadata, rest) = string(rest)?;
    let rest = rest.strip_prefix(",\"payload\":\"")?;
    let (payload, rest) = string(rest)?;
    let rest = rest.strip_prefix(",\"previous_hash\":\"")?;
    let (previous_hash, rest) = string(rest)?;
    let rest = rest.strip_prefix(",\"hash\":\"")?;
    let (hash, rest) = string(rest)?;
    if rest != "}" {
        return None;
    }
    Some(EventLineRef {
        event_id: Uuid::parse_str(event_id).ok()?,
        tenant_sequence,
        stream_id: Cow::Borrowed(stream_id),
        version: u32::try_from(version).ok()?,
        event_type: Cow::Borrowed(event_type),
        type_version: u16::try_from(type_version).ok()?,
        recorded_at_micros,
        metadata: Cow::Borrowed(metadata),
        payload: Cow::Borrowed(payload),
        previous_hash: Cow::Borrowed(previous_hash),
        hash: Cow::Borrowed(hash),
    })
}

/// What a line that is not an event line is: the trailer, or the error to report.
fn not_an_event_line(
    number: usize,
    text: &str,
    expected: u64,
    error: serde_json::Error,
) -> Result<Trailer, VerifyError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| VerifyError::Malformed {
            line: number,
            message: format!("not JSON: {e}"),
        })?;
    if value.get("signed_head").is_some() {
        return serde_json::from_value(value)
            .map_err(|e| VerifyError::Trailer(format!("line {number} is malformed: {e}")));
    }
    Err(VerifyError::Malformed {
        line: number,
        message: format!("not an event line (sequence {expected} expected): {error}"),
    })
}

/// Verifies an export given its lines (without their line ends) and a signature check
/// `(message, signature) -> valid` (`vault::audit::verify` with the auditor's public key).
///
/// Memory: 32 bytes per event (the hashes, to find the signed head's) and the replayed
/// customer states.
pub fn verify_lines<I, S, E>(
    lines: I,
    signature_valid: impl Fn(&[u8], &[u8]) -> bool,
) -> Result<Summary, VerifyError>
where
    I: IntoIterator<Item = Result<S, E>>,
    S: AsRef<str>,
    E: std::fmt::Display,
{
    let mut verifier = Verifier::new(signature_valid);
    for (index, line) in lines.into_iter().enumerate() {
        let text = line.map_err(|e| VerifyError::Malformed {
            line: index + 1,
            message: format!("cannot be read: {e}"),
        })?;
        verifier.line(text.as_ref())?;
    }
    verifier.finish()
}

/// [`verify_lines`] over a file's bytes, read in large blocks and cut into lines in place
/// (no allocation or copy per line: `loyalty audit verify`'s path, docs/PERFORMANCE.md).
/// Lines end with `\n` (a `\r` before it is dropped, as `BufRead::lines` does); the last
/// may lack it.
pub fn verify_reader(
    mut reader: impl std::io::Read,
    signature_valid: impl Fn(&[u8], &[u8]) -> bool,
) -> Result<Summary, VerifyError> {
    const BLOCK: usize = 4 << 20;
    let mut verifier = Verifier::new(signature_valid);
    // The bytes not yet verified are `buffer[start..end]`; `buffer` grows only for a line
    // longer than itself.
    let mut buffer = vec![0u8; BLOCK];
    let (mut start, mut end) = (0usize, 0usize);
    let mut number = 0usize;
    let unreadable = |line: usize, message: String| VerifyError::Malformed {
        line,
        message: format!("cannot be read: {message}"),
    };
    loop {
        if end == buffer.len() {
            if start > 0 {
                buffer.copy_within(start..end, 0);
                (start, end) = (0, end - start);
            } else {
                buffer.resize(buffer.len() * 2, 0);
            }
        }
        let read = loop {
            match reader.read(&mut buffer[end..]) {
                Ok(read) => break read,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(unreadable(number + 1, e.to_string())),
            }
        };
        let at_end = read == 0;
        let fresh = end;
        end += read;
        // Whole lines only, except at the end of the file.
        let complete = match memchr::memrchr(b'\n', &buffer[fresh..end]) {
            Some(last) => fresh + last + 1,
            None if at_end => end,
            None => continue,
        };
        // Validated by SIMD (`simdutf8`); only a block that fails is validated again by std,
        // whose error says where.
        let block = &buffer[start..complete];
        let text = match simdutf8::basic::from_utf8(block) {
            Ok(text) => Ok(text),
            Err(_) => std::str::from_utf8(block),
        }
        .map_err(|e| {
            let line = number
                + 1
                + buffer[start..start + e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count();
            unreadable(line, "stream did not contain valid UTF-8".into())
        })?;
        if !text.is_empty() {
            let text = text.strip_suffix('\n').unwrap_or(text);
            let mut line_start = 0;
            // Line ends by a vectorised search; `\n` is ASCII, so the cuts are on boundaries.
            for line_end in
                memchr::memchr_iter(b'\n', text.as_bytes()).chain(std::iter::once(text.len()))
            {
                let line = &text[line_start..line_end];
                line_start = line_end + 1;
                number += 1;
                verifier.line(line.strip_suffix('\r').unwrap_or(line))?;
            }
        }
        start = complete;
        if start == end {
            (start, end) = (0, 0);
        }
        if at_end {
            break;
        }
    }
    verifier.finish()
}

/// The verification as a fold over lines: [`Verifier::line`] for each line in file order,
/// then [`Verifier::finish`]. Stops at the first failure.
pub struct Verifier<F> {
    signature_valid: F,
    header: Option<Header>,
    tenant_id: TenantId,
    chain: ChainVerifier,
    hashes: Vec<ChainHash>,
    /// Every event folded (customers in place), with the lots' worth and the movements.
    books: Books,
    trailer: Option<Trailer>,
    lines: usize,
    // Decoded bytes, reused from line to line.
    metadata: Vec<u8>,
    payload: Vec<u8>,
}

impl<F: Fn(&[u8], &[u8]) -> bool> Verifier<F> {
    pub fn new(signature_valid: F) -> Self {
        Verifier {
            signature_valid,
            header: None,
            tenant_id: TenantId::from_uuid(Uuid::nil()),
            chain: ChainVerifier::default(),
            hashes: Vec::new(),
            books: Books::new(),
            trailer: None,
            lines: 0,
            metadata: Vec::new(),
            payload: Vec::new(),
        }
    }

    /// The next line of the file, without its line end.
    pub fn line(&mut self, text: &str) -> Result<(), VerifyError> {
        self.lines += 1;
        let number = self.lines;
        if self.header.is_none() {
            return self.header(text);
        }
        if self.trailer.is_some() {
            return Err(VerifyError::Trailer(format!(
                "line {number} follows the trailer"
            )));
        }
        // Event lines are the many: parsed as one first; anything else is looked at again.
        let parsed = match exporter_layout(text) {
            Some(event) => Ok(event),
            None => serde_json::from_str(text),
        };
        let event: EventLineRef<'_> = match parsed {
            Ok(event) => event,
            Err(error) => {
                let expected = self.chain.head().0 + 1;
                self.trailer = Some(not_an_event_line(number, text, expected, error)?);
                return Ok(());
            }
        };
        let tenant_id = self.tenant_id;
        let sequence = event.tenant_sequence;
        let bad = |message: &str| VerifyError::event(sequence, message);
        // SIMD base64 (standard alphabet, padded: what the exporter writes), into buffers
        // reused from line to line.
        self.metadata.clear();
        base64_simd::STANDARD
            .decode_append(event.metadata.as_bytes(), &mut self.metadata)
            .map_err(|_| bad("metadata is not base64"))?;
        self.payload.clear();
        base64_simd::STANDARD
            .decode_append(event.payload.as_bytes(), &mut self.payload)
            .map_err(|_| bad("payload is not base64"))?;
        let previous_hash = hash_from_hex(&event.previous_hash)
            .ok_or_else(|| bad("previous_hash is not 32 bytes of hex"))?;
        let hash = hash_from_hex(&event.hash).ok_or_else(|| bad("hash is not 32 bytes of hex"))?;
        let fields = ChainFields {
            tenant_id,
            tenant_sequence: sequence,
            event_id: EventId::from_uuid(event.event_id),
            stream_id: &event.stream_id,
            version: event.version,
            event_type: &event.event_type,
            type_version: event.type_version,
            recorded_at_micros: event.recorded_at_micros,
            metadata: &self.metadata,
            payload: &self.payload,
        };
        self.chain
            .push(StoredLink {
                fields,
                previous_hash: &previous_hash,
                hash: &hash,
            })
            .map_err(|broken| match broken {
                ChainBreak::Sequence { previous, found } => VerifyError::event(
                    previous + 1,
                    format!("missing or out of order (the next line has sequence {found})"),
                ),
                ChainBreak::PreviousHash { sequence } => VerifyError::event(
                    sequence,
                    "previous_hash is not the hash of the event before it",
                ),
                ChainBreak::Hash { sequence } => {
                    VerifyError::event(sequence, "hash does not match its contents")
                }
            })?;
        self.hashes.push(hash);
        let decoded =
            ledger_core::codec::decode(&event.event_type, event.type_version, &self.payload)
                .map_err(|e| {
                    VerifyError::event(sequence, format!("payload does not decode: {e}"))
                })?;
        match StreamId::parse(&event.stream_id) {
            Ok(stream @ StreamId::Customer(_)) => self.books.apply(stream, &decoded),
            // The tenant's own events carry the settings the books need (none are valued).
            Ok(stream @ StreamId::Tenant(id)) if id == tenant_id => {
                self.books.apply(stream, &decoded)
            }
            Ok(StreamId::Tenant(_)) => {
                return Err(bad("is in another tenant's stream"));
            }
            Err(_) => return Err(bad("stream_id is not a stream id")),
        }
        Ok(())
    }

    fn header(&mut self, text: &str) -> Result<(), VerifyError> {
        let header: Header = serde_json::from_str(text)
            .map_err(|e| VerifyError::Header(format!("not a header line: {e}")))?;
        if header.format != FORMAT {
            return Err(VerifyError::Header(format!(
                "format {:?}, expected {FORMAT:?}",
                header.format
            )));
        }
        if header.version != FORMAT_VERSION {
            return Err(VerifyError::Header(format!(
                "version {} is not supported (this verifier reads {FORMAT_VERSION})",
                header.version
            )));
        }
        self.tenant_id = TenantId::from_uuid(header.tenant_id);
        self.header = Some(header);
        Ok(())
    }

    /// After the last line: the trailer, the signed head, and the replay's summary.
    pub fn finish(self) -> Result<Summary, VerifyError> {
        let Some(header) = self.header else {
            return Err(VerifyError::Header("the file is empty".into()));
        };
        let tenant_id = self.tenant_id;
        let hashes = self.hashes;
        let books = self.books;
        let (last, _) = self.chain.head();
        let trailer = self.trailer.ok_or_else(|| {
            VerifyError::Trailer(format!(
                "missing: the file ends after sequence {last} (truncated?)"
            ))
        })?;
        // A signed head beyond the last line first: it names the first missing sequence.
        if let Some(head) = &trailer.signed_head {
            if head.sequence > last {
                return Err(VerifyError::Truncated {
                    sequence: last + 1,
                    signed: head.sequence,
                    last,
                });
            }
        }
        if trailer.events != last {
            return Err(VerifyError::Trailer(format!(
                "counts {} events but the file holds {last}",
                trailer.events
            )));
        }
        let mut summary = Summary {
            tenant_id: header.tenant_id,
            events: last,
            ..Summary::default()
        };
        if let Some(head) = trailer.signed_head {
            let sequence = head.sequence;
            let fail = |message: &str| VerifyError::SignedHead {
                sequence,
                message: message.into(),
            };
            if head.tenant_id != header.tenant_id {
                return Err(fail("is another tenant's"));
            }
            if sequence == 0 {
                return Err(fail("names sequence 0"));
            }
            let head_hash = hash_from_hex(&head.head_hash)
                .ok_or_else(|| fail("hash is not 32 bytes of hex"))?;
            let index = usize::try_from(sequence - 1).map_err(|_| fail("is out of range"))?;
            if hashes[index] != head_hash {
                return Err(fail("hash is not the hash of the event at that sequence"));
            }
            let signature = BASE64
                .decode(&head.signature)
                .map_err(|_| fail("signature is not base64"))?;
            let message =
                signed_head_message(tenant_id, sequence, &head_hash, head.signed_at_micros);
            if !(self.signature_valid)(&message, &signature) {
                return Err(fail(&format!(
                    "signature does not verify with the public key given (signed by {})",
                    head.key_id
                )));
            }
            summary.signed_sequence = sequence;
            summary.key_id = Some(head.key_id);
        }

        let total = |f: fn(&CustomerState) -> Points| -> i64 {
            books.customers().map(|(_, c)| f(c).value()).sum()
        };
        summary.customers = books.customers().count() as u64;
        summary.earned = total(|c| c.earned);
        summary.redeemed = total(|c| c.redeemed);
        summary.expired = total(|c| c.expired);
        summary.reversed = total(|c| c.reversed);
        summary.adjusted = total(|c| c.adjusted);
        summary.pending = total(|c| c.pending);
        summary.outstanding = total(|c| c.balance);
        summary.liability = books.outstanding();
        summary.movements = books.movements();
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::export::event_line;
    use chrono::{Duration, TimeZone, Utc};
    use ledger_core::command::{PhoneIndex, WrappedDataKey};
    use ledger_core::events::SealedPersonalData;
    use ledger_core::evolve;
    use ledger_core::rules::RuleKind;
    use ledger_core::{
        decide, Command, Currency, CustomerId, LedgerState, LotId, MinorUnits, PurchaseId,
        RedemptionId, ReferralCode, Rule, RuleSet, TenantState,
    };
    use schema::store::TenantHead;
    use std::collections::HashMap;
    use vault::audit::AuditSigningKey;

    const TENANT: u128 = 0x0190_0000_0000_7000_8000_0000_0000_0001;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(TENANT + n)
    }

    fn key() -> AuditSigningKey {
        AuditSigningKey::parse(&vault::generate_key_base64().unwrap()).unwrap()
    }

    /// A tenant (1 point per 100 minor units) with two customers: 4 purchases, one
    /// redemption of 5 points. Returns the export's lines, signed by `key` at `signed_at`
    /// (the head at the last event, or `sign_at` when given).
    struct Ledger {
        tenant_id: TenantId,
        tenant: TenantState,
        customers: HashMap<CustomerId, CustomerState>,
        head: TenantHead,
        events: Vec<schema::store::RecordedEvent>,
        at: chrono::DateTime<Utc>,
    }

    impl Ledger {
        fn run(&mut self, stream: StreamId, command: Command) {
            let customer_id = match stream {
                StreamId::Customer(c) => Some(c),
                StreamId::Tenant(_) => None,
            };
            let customer = customer_id
                .and_then(|c| self.customers.get(&c).cloned())
                .unwrap_or_default();
            let events = decide(
                LedgerState {
                    tenant: &self.tenant,
                    customer: &customer,
                    stock: &ledger_core::aggregate::RewardStock::new(),
                },
                &command,
            )
            .expect("accepted");
            let mut customer = customer;
            for event in &events {
                self.tenant = evolve(std::mem::take(&mut self.tenant), event);
                customer = evolve(customer, event);
                let version = self
                    .events
                    .iter()
                    .filter(|e| e.stream_id == stream.to_string())
                    .count() as i32
                    + 1;
                let n = self.events.len() as u128;
                let recorded = self
                    .head
                    .seal(
                        self.tenant_id,
                        EventId::from_uuid(id(1_000 + n)),
                        stream.to_string(),
                        version,
                        event,
                        b"{\"actor\":\"test\"}".to_vec(),
                        self.at,
                    )
                    .unwrap();
                self.events.push(recorded);
                self.at += Duration::seconds(1);
            }
            if let Some(c) = customer_id {
                self.customers.insert(c, customer);
            }
        }

        fn new() -> Ledger {
            let tenant_id = TenantId::from_uuid(id(0));
            let mut ledger = Ledger {
                tenant_id,
                tenant: TenantState::default(),
                customers: HashMap::new(),
                head: TenantHead::GENESIS,
                events: Vec::new(),
                at: Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap(),
            };
            let rule_set = RuleSet::new(
                1,
                vec![Rule::new(
                    "per-amount",
                    RuleKind::PerAmountSpent {
                        amount_step: MinorUnits::new(100),
                        points_per_step: Points::new(1),
                        minimum_purchase: MinorUnits::ZERO,
                    },
                )],
            )
            .unwrap();
            let at = ledger.at;
            ledger.run(
                StreamId::Tenant(tenant_id),
                Command::RegisterTenant {
                    tenant_id,
                    name: "Suya Spot".into(),
                    currency: Currency::NGN,
                    expiry_days: 30,
                    rule_set,
                    at,
                },
            );
            for c in 1..=2u128 {
                // Customer 1's lots open at 40 minor units a point, customer 2's at 25.
                let at = ledger.at;
                ledger.run(
                    StreamId::Tenant(tenant_id),
                    Command::ChangeProgrammeSettings {
                        settings: ledger_core::events::ProgrammeSettings {
                            point_value: Some(MinorUnits::new(if c == 1 { 40 } else { 25 })),
                            ..Default::default()
                        },
                        at,
                    },
                );
                let customer_id = CustomerId::from_uuid(id(c));
                let at = ledger.at;
                ledger.run(
                    StreamId::Customer(customer_id),
                    Command::EnrolCustomer {
                        customer_id,
                        phone_index: PhoneIndex([c as u8; 32]),
                        personal_data: SealedPersonalData {
                            nonce: vec![0; 12],
                            ciphertext: vec![1; 14],
                        },
                        data_key: WrappedDataKey {
                            master_key_id: "test".into(),
                            bytes: vec![1; 60],
                        },
                        birthday: None,
                        referral_code: ReferralCode::from_random_bytes([c as u8; 5]),
                        referred_by: None,
                        at,
                    },
                );
                for p in 0..2u128 {
                    let at = ledger.at;
                    ledger.run(
                        StreamId::Customer(customer_id),
                        Command::LogPurchase {
                            customer_id,
                            purchase_id: PurchaseId::from_uuid(id(100 + c * 10 + p)),
                            lot_id: LotId::from_uuid(id(200 + c * 10 + p)),
                            amount: MinorUnits::new(1_000 * (c as i64)),
                            line_items: Vec::new(),
                            reference: None,
                            occurred_at: None,
                            at,
                        },
                    );
                }
            }
            let customer_id = CustomerId::from_uuid(id(1));
            let at = ledger.at;
            ledger.run(
                StreamId::Customer(customer_id),
                Command::RedeemPoints {
                    customer_id,
                    redemption_id: RedemptionId::from_uuid(id(300)),
                    points: Points::new(5),
                    description: "a drink".into(),
                    at,
                },
            );
            ledger
        }

        /// The export's lines, the head at `signed` signed by `key`.
        fn export(&self, key: &AuditSigningKey, signed: Option<u64>) -> Vec<String> {
            let mut lines = vec![serde_json::to_string(&Header {
                format: FORMAT.into(),
                version: FORMAT_VERSION,
                tenant_id: self.tenant_id.as_uuid(),
            })
            .unwrap()];
            for event in &self.events {
                lines.push(serde_json::to_string(&event_line(event)).unwrap());
            }
            let signed_head = signed.map(|sequence| {
                let hash = self.events[sequence as usize - 1].hash;
                let signed_at_micros = 1_780_000_000_000_000;
                let message =
                    signed_head_message(self.tenant_id, sequence, &hash, signed_at_micros);
                SignedHeadLine {
                    tenant_id: self.tenant_id.as_uuid(),
                    sequence,
                    head_hash: hex::encode(hash),
                    signed_at_micros,
                    key_id: key.key_id().into(),
                    signature: BASE64.encode(key.sign(&message)),
                }
            });
            lines.push(
                serde_json::to_string(&Trailer {
                    events: self.events.len() as u64,
                    signed_head,
                })
                .unwrap(),
            );
            lines
        }
    }

    fn check(lines: &[String], key: &AuditSigningKey) -> Result<Summary, VerifyError> {
        verify_lines(
            lines.iter().map(Ok::<_, std::convert::Infallible>),
            |message, signature| vault::audit::verify(key.public_key(), message, signature),
        )
    }

    fn edit_event(lines: &mut [String], sequence: usize, f: impl FnOnce(&mut EventLine)) {
        let mut event: EventLine = serde_json::from_str(&lines[sequence]).unwrap();
        f(&mut event);
        lines[sequence] = serde_json::to_string(&event).unwrap();
    }

    fn edit_trailer(lines: &mut [String], f: impl FnOnce(&mut Trailer)) {
        let last = lines.len() - 1;
        let mut trailer: Trailer = serde_json::from_str(&lines[last]).unwrap();
        f(&mut trailer);
        lines[last] = serde_json::to_string(&trailer).unwrap();
    }

    fn first_bad(result: Result<Summary, VerifyError>) -> u64 {
        let error = result.expect_err("tampering detected");
        error
            .sequence()
            .unwrap_or_else(|| panic!("no sequence named: {error}"))
    }

    #[test]
    fn an_intact_export_verifies_and_sums_the_replay() {
        let ledger = Ledger::new();
        let key = key();
        let n = ledger.events.len() as u64;
        let summary = check(&ledger.export(&key, Some(n)), &key).unwrap();
        assert_eq!(summary.events, n);
        assert_eq!(summary.signed_sequence, n);
        assert_eq!(summary.not_covered(), 0);
        assert_eq!(summary.customers, 2);
        // 2 × 10 points for customer 1, 2 × 20 for customer 2; 5 redeemed.
        assert_eq!(summary.earned, 60);
        assert_eq!(summary.redeemed, 5);
        assert_eq!(summary.outstanding, 55);
        // Each lot at its own point value: 15 of customer 1's points left at 40, 40 of
        // customer 2's at 25; the 5 redeemed came from a lot valued at 40.
        assert_eq!(summary.liability.points, 55);
        assert_eq!(summary.liability.minor, 15 * 40 + 40 * 25);
        assert_eq!(summary.movements.issued.minor, 20 * 40 + 40 * 25);
        assert_eq!(summary.movements.redeemed.minor, 5 * 40);
        assert_eq!(summary.liability.unvalued_points, 0);
        let printed = summary.to_string();
        assert!(
            printed.contains("liability (open lots): 1600 minor units for 55 points"),
            "{printed}"
        );
        assert!(printed.contains("breakage (value expired): 0 minor units"));
        assert_eq!(
            summary.outstanding,
            summary.earned
                - summary.pending
                - summary.redeemed
                - summary.expired
                - summary.reversed
                + summary.adjusted
        );
        let text = summary.to_string();
        assert!(text.contains("outstanding balance: 55"), "{text}");
    }

    #[test]
    fn events_after_the_signed_head_are_reported_not_failed() {
        let ledger = Ledger::new();
        let key = key();
        let summary = check(&ledger.export(&key, Some(3)), &key).unwrap();
        assert_eq!(summary.signed_sequence, 3);
        assert_eq!(summary.not_covered(), ledger.events.len() as u64 - 3);
        assert!(summary.to_string().contains("not covered by a signature"));
        let unsigned = check(&ledger.export(&key, None), &key).unwrap();
        assert_eq!(unsigned.signed_sequence, 0);
        assert_eq!(unsigned.key_id, None);
    }

    #[test]
    fn a_one_byte_change_to_a_payload_names_its_sequence() {
        let ledger = Ledger::new();
        let key = key();
        let mut lines = ledger.export(&key, Some(ledger.events.len() as u64));
        edit_event(&mut lines, 5, |event| {
            let mut payload = BASE64.decode(&event.payload).unwrap();
            let last = payload.len() - 1;
            payload[last] ^= 1;
            event.payload = BASE64.encode(payload);
        });
        let error = check(&lines, &key).unwrap_err();
        assert_eq!(error.sequence(), Some(5));
        assert_eq!(
            error.to_string(),
            "sequence 5: hash does not match its contents"
        );
    }

    #[test]
    fn a_rehashed_event_breaks_the_next_link() {
        let ledger = Ledger::new();
        let key = key();
        let mut lines = ledger.export(&key, Some(ledger.events.len() as u64));
        let mut forged = ledger.events[3].clone();
        forged.recorded_at += Duration::seconds(1);
        forged.hash = ledger_core::chain::link(&forged.previous_hash, &forged.chain_fields());
        lines[4] = serde_json::to_string(&event_line(&forged)).unwrap();
        assert_eq!(first_bad(check(&lines, &key)), 5);
    }

    #[test]
    fn a_deleted_event_names_its_sequence() {
        let ledger = Ledger::new();
        let key = key();
        let mut lines = ledger.export(&key, Some(ledger.events.len() as u64));
        lines.remove(7);
        let error = check(&lines, &key).unwrap_err();
        assert_eq!(error.sequence(), Some(7), "{error}");
    }

    #[test]
    fn swapped_events_name_the_first() {
        let ledger = Ledger::new();
        let key = key();
        let mut lines = ledger.export(&key, Some(ledger.events.len() as u64));
        lines.swap(4, 5);
        assert_eq!(first_bad(check(&lines, &key)), 4);
        // Swapped and renumbered: the links break.
        edit_event(&mut lines, 4, |e| e.tenant_sequence = 4);
        edit_event(&mut lines, 5, |e| e.tenant_sequence = 5);
        assert_eq!(first_bad(check(&lines, &key)), 4);
    }

    #[test]
    fn a_truncated_tail_names_the_first_missing_sequence() {
        let ledger = Ledger::new();
        let key = key();
        let n = ledger.events.len();
        let mut lines = ledger.export(&key, Some(n as u64));
        // Drop the last two events, and fix the count as a forger would.
        lines.drain(n - 1..=n);
        edit_trailer(&mut lines, |t| t.events = n as u64 - 2);
        let error = check(&lines, &key).unwrap_err();
        assert_eq!(error.sequence(), Some(n as u64 - 1), "{error}");
        assert!(matches!(error, VerifyError::Truncated { .. }));
        // Without the trailer at all.
        let mut lines = ledger.export(&key, Some(n as u64));
        lines.truncate(n - 1);
        assert!(matches!(check(&lines, &key), Err(VerifyError::Trailer(_))));
    }

    #[test]
    fn a_forged_head_names_its_sequence() {
        let ledger = Ledger::new();
        let key = key();
        let n = ledger.events.len() as u64;
        // Signed by another key.
        let lines = ledger.export(&self::key(), Some(n));
        let error = check(&lines, &key).unwrap_err();
        assert_eq!(error.sequence(), Some(n), "{error}");
        assert!(error.to_string().contains("signature does not verify"));
        // The head's hash altered.
        let mut lines = ledger.export(&key, Some(n));
        edit_trailer(&mut lines, |t| {
            let head = t.signed_head.as_mut().unwrap();
            let mut hash = hex::decode(&head.head_hash).unwrap();
            hash[0] ^= 1;
            head.head_hash = hex::encode(hash);
        });
        assert_eq!(first_bad(check(&lines, &key)), n);
        // The head moved to an earlier event: its hash no longer matches.
        let mut lines = ledger.export(&key, Some(n));
        edit_trailer(&mut lines, |t| {
            t.signed_head.as_mut().unwrap().sequence = n - 1
        });
        assert_eq!(first_bad(check(&lines, &key)), n - 1);
        // Its time altered: the signature fails.
        let mut lines = ledger.export(&key, Some(n));
        edit_trailer(&mut lines, |t| {
            t.signed_head.as_mut().unwrap().signed_at_micros += 1
        });
        assert_eq!(first_bad(check(&lines, &key)), n);
    }

    #[test]
    fn another_tenant_in_the_header_breaks_the_first_event() {
        let ledger = Ledger::new();
        let key = key();
        let mut lines = ledger.export(&key, None);
        lines[0] = serde_json::to_string(&Header {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            tenant_id: Uuid::from_u128(7),
        })
        .unwrap();
        assert_eq!(first_bad(check(&lines, &key)), 1);
        lines[0] = r#"{"format":"something-else","version":1,"tenant_id":"00000000-0000-0000-0000-000000000007"}"#.into();
        assert!(matches!(check(&lines, &key), Err(VerifyError::Header(_))));
        assert!(matches!(check(&[], &key), Err(VerifyError::Header(_))));
    }

    #[test]
    fn hashes_read_from_hex_in_either_case_and_nothing_else() {
        let hash: ChainHash = std::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(hash_from_hex(&hex::encode(hash)), Some(hash));
        assert_eq!(hash_from_hex(&hex::encode_upper(hash)), Some(hash));
        let text = hex::encode(hash);
        assert_eq!(hash_from_hex(&text[..62]), None);
        assert_eq!(hash_from_hex(&format!("{text}00")), None);
        for bad in ["g", " ", "x", "é"] {
            let mut broken = text.clone();
            broken.replace_range(10..10 + bad.len(), bad);
            assert_eq!(hash_from_hex(&broken), None, "{bad}");
        }
    }

    /// The command's block reader sees the same lines as `verify_lines`, whatever the block
    /// boundaries: CRLF ends, a last line without its end, and its failures name the same
    /// line.
    #[test]
    fn the_block_reader_cuts_the_same_lines() {
        /// A reader that hands out `step` bytes at a time, to put boundaries everywhere.
        struct Trickle<'a>(&'a [u8], usize);
        impl std::io::Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = self.1.min(self.0.len()).min(out.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let ledger = Ledger::new();
        let key = key();
        let n = ledger.events.len() as u64;
        let lines = ledger.export(&key, Some(n));
        let expected = check(&lines, &key).unwrap();
        let verify = |bytes: &[u8], step: usize| {
            verify_reader(Trickle(bytes, step), |message, signature| {
                vault::audit::verify(key.public_key(), message, signature)
            })
        };
        let unix = lines.join("\n") + "\n";
        let windows = lines.join("\r\n");
        for step in [1, 7, 100, 1 << 20] {
            assert_eq!(
                verify(unix.as_bytes(), step).unwrap(),
                expected,
                "step {step}"
            );
            assert_eq!(
                verify(windows.as_bytes(), step).unwrap(),
                expected,
                "step {step}"
            );
        }
        // A changed payload byte: the same failure through both paths.
        let mut tampered = lines.clone();
        edit_event(&mut tampered, 3, |event| {
            let mut payload = BASE64.decode(&event.payload).unwrap();
            payload[4] ^= 1;
            event.payload = BASE64.encode(payload);
        });
        let text = tampered.join("\n") + "\n";
        assert_eq!(
            verify(text.as_bytes(), 13).unwrap_err(),
            check(&tampered, &key).unwrap_err()
        );
        // Cut short (no trailer) and not UTF-8: named, not a panic.
        let cut = lines[..lines.len() - 1].join("\n");
        assert!(matches!(
            verify(cut.as_bytes(), 5),
            Err(VerifyError::Trailer(_))
        ));
        let mut bytes = unix.into_bytes();
        let second_line = bytes.iter().position(|&b| b == b'\n').unwrap() + 5;
        bytes[second_line] = 0xFF;
        assert_eq!(
            verify(&bytes, 64).unwrap_err(),
            VerifyError::Malformed {
                line: 2,
                message: "cannot be read: stream did not contain valid UTF-8".into()
            }
        );
        assert!(matches!(verify(b"", 8), Err(VerifyError::Header(_))));
    }

    /// The exporter's layout read without the JSON parser gives what the parser gives, and
    /// anything off that layout is left to the parser.
    #[test]
    fn the_exporters_layout_reads_as_the_parser_reads_it() {
        let ledger = Ledger::new();
        let lines = ledger.export(&key(), None);
        let fields = |e: &EventLineRef<'_>| {
            format!(
                "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
                e.event_id,
                e.tenant_sequence,
                e.stream_id,
                e.version,
                e.event_type,
                e.type_version,
                e.recorded_at_micros,
                e.metadata,
                e.payload,
                e.previous_hash,
                e.hash
            )
        };
        for line in &lines[1..lines.len() - 1] {
            let fast = exporter_layout(line).expect("the exporter's own line");
            let parsed: EventLineRef<'_> = serde_json::from_str(line).unwrap();
            assert_eq!(fields(&fast), fields(&parsed));
        }
        let line = &lines[1];
        let negative = line.replace("\"recorded_at_micros\":", "\"recorded_at_micros\":-");
        assert!(exporter_layout(&negative).unwrap().recorded_at_micros < 0);
        // Off the layout: the parser decides (and may well accept it).
        let escaped = line.replacen("\"stream_id\":\"", "\"stream_id\":\"\\u0063", 1);
        let spaced = line.replacen(",\"version\":", ", \"version\":", 1);
        let reordered = line.replacen("{\"event_id\"", "{\"zzz\":1,\"event_id\"", 1);
        let leading_zero = line.replacen("\"type_version\":", "\"type_version\":0", 1);
        let trailing = format!("{line} ");
        let too_big = line.replacen("\"version\":", "\"version\":99999999999", 1);
        for variant in [escaped, spaced, reordered, leading_zero, trailing, too_big] {
            assert!(exporter_layout(&variant).is_none(), "{variant}");
        }
        assert!(exporter_layout(&lines[0]).is_none());
        assert!(exporter_layout(&lines[lines.len() - 1]).is_none());
    }
}
