//! Audit record types and their canonical bytes.
//!
//! The gateway hands the log a [`Record`] (a decision, a refusal or an outcome); the writer adds the envelope
//! (`seq`, `time`, `kind`, `prev_hash`, `hash`). Writer-internal records ([`Internal`]: `segment_start`,
//! `recovery`, `gap`, `checkpoint`) use the same envelope.
//!
//! A record is serialised once, on the caller's task ([`Prepared::new`]), into the canonical bytes of its
//! `data` object, so the single writer thread only splices the envelope around them and hashes
//! (see [`crate::audit::chain`]). Canonical JSON, used everywhere a hash is computed:
//!
//! - objects: members sorted by key, comparing the keys' UTF-8 bytes; no duplicate keys;
//! - no whitespace anywhere (no space after `:` or `,`, no newline);
//! - strings as `serde_json` writes them: `"` and `\` escaped as `\"` and `\\`, U+0008/0009/000A/000C/000D
//!   as `\b \t \n \f \r`, other control characters below U+0020 as `\u00XX` (lower-case hex), everything
//!   else (including non-ASCII) as raw UTF-8;
//! - integers in plain decimal; other numbers in the shortest form that reads back as the same `f64`
//!   (`serde_json`/`ryu`, e.g. `0.1`, `1e+22`, `-2.5e-7`); `true`, `false`, `null` as such.
//! - absent optional fields are left out, never written as `null`.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

/// `time` format: UTC, RFC 3339, always six fractional digits and `Z` (so times also compare as strings).
pub const TIME_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// The current time in milliseconds since the Unix epoch (how the approval store and tool pins keep time).
pub fn now_millis() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A time in milliseconds since the Unix epoch as records and the API show it (RFC 3339, UTC, microseconds).
pub fn format_millis(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .map(format_time)
        .unwrap_or_default()
}

/// Formats a point in time the way records carry it (`2026-11-22T01:09:30.123456Z`): [`TIME_FORMAT`], written
/// digit by digit (once per record, on the request path; `time`'s formatter took ~0.3 µs of it).
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let year = t.year();
    if !(0..=9999).contains(&year) {
        // Not four digits: let `time` say it (or fail) as before.
        return t
            .format(TIME_FORMAT)
            .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".to_owned());
    }
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year as u32);
    put(5, 2, u8::from(t.month()).into());
    put(8, 2, t.day().into());
    put(11, 2, t.hour().into());
    put(14, 2, t.minute().into());
    put(17, 2, t.second().into());
    put(20, 6, t.microsecond());
    String::from_utf8(out.to_vec()).expect("ASCII digits")
}

/// What the gateway records.
// Built once per request and serialised at once: boxing the decision would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Record {
    /// The policy chain's decision about one MCP message (written before anything is forwarded).
    Decision(DecisionRecord),
    /// A request refused before policy ever saw it.
    Refusal(RefusalRecord),
    /// What happened upstream after a forwarded request (written after the fact).
    Outcome(OutcomeRecord),
    /// A step of the approval workflow (requested, notified, approved, denied, expired, grant used).
    Approval(ApprovalRecord),
    /// A tool definition that differs from its pin (`tool_changed`), or an operator accepting one
    /// (`tool_accepted`).
    Tool(ToolRecord),
}

impl Record {
    /// The envelope's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Decision(_) => "decision",
            Record::Refusal(_) => "refusal",
            Record::Outcome(_) => "outcome",
            Record::Approval(a) => a.event.kind(),
            Record::Tool(t) if t.accepted_by.is_some() => "tool_accepted",
            Record::Tool(_) => "tool_changed",
        }
    }

    /// The `data` object of the line.
    pub fn to_data(&self) -> Value {
        match self {
            Record::Decision(d) => to_object(d),
            Record::Refusal(r) => to_object(r),
            Record::Outcome(o) => to_object(o),
            Record::Approval(a) => a.to_data(),
            Record::Tool(t) => to_object(t),
        }
    }
}

impl From<DecisionRecord> for Record {
    fn from(r: DecisionRecord) -> Self {
        Record::Decision(r)
    }
}
impl From<RefusalRecord> for Record {
    fn from(r: RefusalRecord) -> Self {
        Record::Refusal(r)
    }
}
impl From<OutcomeRecord> for Record {
    fn from(r: OutcomeRecord) -> Self {
        Record::Outcome(r)
    }
}

/// The final decision about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Deny,
    RequireApproval,
    /// The tool is hidden on this route (answered as unknown).
    Hidden,
    /// `tools/call` arguments did not match the tool's `inputSchema`.
    InvalidArguments,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::RequireApproval => "require_approval",
            Decision::Hidden => "hidden",
            Decision::InvalidArguments => "invalid_arguments",
        }
    }
}

/// What of the `tools/call` arguments is kept (the gateway's redaction settings decide).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Arguments {
    /// The arguments as sent (`"arguments": {…}`).
    Full(Value),
    /// Only their digest: `"arguments_digest": "sha256:<hex>"`, `"arguments_size": <bytes>`.
    Digest { sha256: String, size: u64 },
    /// Nothing (no `arguments*` field).
    #[default]
    Omitted,
}

impl Arguments {
    /// The digest form of `args`: SHA-256 over their canonical bytes, and that byte count.
    pub fn digest_of(args: &Value) -> Arguments {
        let mut bytes = Vec::new();
        canonical_bytes(args, &mut bytes);
        Arguments::Digest {
            sha256: hex_of(&Sha256::digest(&bytes)),
            size: bytes.len() as u64,
        }
    }
}

/// Lower-case hex of a SHA-256 digest, without `hex::encode`'s char-by-char `String`.
fn hex_of(digest: &[u8]) -> String {
    let mut out = [0u8; 64];
    hex::encode_to_slice(digest, &mut out).expect("32 bytes");
    String::from_utf8(out.to_vec()).expect("hex is ASCII")
}

/// The fields [`Arguments`] adds to a decision record's `data` (flattened into it, in key order).
impl Serialize for Arguments {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut m = s.serialize_map(None)?;
        match self {
            Arguments::Full(a) => m.serialize_entry("arguments", a)?,
            Arguments::Digest { sha256, size } => {
                m.serialize_entry("arguments_digest", &format_args!("sha256:{sha256}"))?;
                m.serialize_entry("arguments_size", size)?;
            }
            Arguments::Omitted => {}
        }
        m.end()
    }
}

/// One policy's answer, as the decision record lists it (in chain order). Fields in key order, like
/// [`DecisionRecord`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyResult {
    /// `allow`, `deny`, `require_approval`, `hidden`, or `failed:<kind>`.
    pub answer: String,
    pub elapsed_us: u64,
    /// `enforce` or `monitor`.
    pub mode: String,
    /// Policy name from the config.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Digest of the policy's settings.
    pub settings_digest: String,
    /// SHA-256 (hex) of the module.
    pub sha256: String,
}

/// The decision about one MCP message.
///
/// Fields are declared in the byte order of their JSON names (with [`Arguments`] flattened in place), so
/// serialising the struct directly writes canonical bytes without building a `Value` and sorting it: this
/// record is written once per request. Debug builds check every record against the sorted form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRecord {
    /// The approval whose grant let this call through (decision `allow` after `require_approval`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// `arguments`, or `arguments_digest` + `arguments_size`, or nothing (see [`Arguments`]).
    #[serde(flatten)]
    pub arguments: Arguments,
    /// Client address (`ip:port`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    pub decision: Decision,
    /// `server_to_client` for a request the server made of the client (sampling, elicitation, roots) on an
    /// answer stream; absent for the client's own messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// JSON-RPC method (`tools/call`, …).
    pub method: String,
    /// Every policy that ran, in order.
    pub policies: Vec<PolicyResult>,
    /// Authenticated principal (token subject), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The principal's selected claims (`identity.jwt.claims`), when there is a principal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_claims: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The gateway's request id (UUIDv7), shared with the access log and the outcome record.
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// JSON-RPC id as sent (number or string); absent for notifications.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc_id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// What the chain would have decided had its monitor-mode policies enforced, when that differs from
    /// `decision` (monitor mode: the would-be answer, queryable with `audit query --would`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would: Option<Decision>,
}

/// Which step of the approval workflow an [`ApprovalRecord`] is (its envelope `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalEvent {
    Requested,
    Notified,
    Approved,
    Denied,
    Expired,
    GrantUsed,
}

impl ApprovalEvent {
    pub fn kind(self) -> &'static str {
        match self {
            ApprovalEvent::Requested => "approval_requested",
            ApprovalEvent::Notified => "approval_notified",
            ApprovalEvent::Approved => "approval_approved",
            ApprovalEvent::Denied => "approval_denied",
            ApprovalEvent::Expired => "approval_expired",
            ApprovalEvent::GrantUsed => "approval_grant_used",
        }
    }
}

/// One step of an approval request's life.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalRecord {
    #[serde(skip)]
    pub event: ApprovalEvent,
    pub approval_id: String,
    /// The gateway request id of the call that asked for the approval, or (grant used) that used it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub route: String,
    pub tool: String,
    /// `sha256:<hex>` of the canonical arguments: what a grant is bound to.
    pub args_digest: String,
    #[serde(skip)]
    pub arguments: Arguments,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Approved / denied: who decided, and what they wrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Notified: whether the webhook accepted it, after how many attempts, and the last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Caller confirmation: how the caller was asked (`elicitation` on a legacy SSE stream, or
    /// `input_required` in 2026-07-28); absent for operator approvals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

impl ApprovalRecord {
    fn to_data(&self) -> Value {
        let mut v = to_object(self);
        if let (Value::Object(m), Arguments::Full(a)) = (&mut v, &self.arguments) {
            m.insert("arguments".into(), a.clone());
        }
        v
    }
}

/// A tool definition that changed since it was pinned, or the acceptance of such a change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolRecord {
    pub route: String,
    pub tool: String,
    /// `sha256:<hex>` of the canonical definition pinned (first seen or last accepted).
    pub old_digest: String,
    /// `sha256:<hex>` of the canonical definition now listed (or accepted).
    pub new_digest: String,
    /// Which parts differ: `name`, `title`, `description`, `inputSchema`, `outputSchema`, `annotations`.
    pub fields: Vec<String>,
    /// `tool_changed`: what the route did (`hide`, `record`, `deny_all`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// `tool_accepted`: who accepted the new definition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_by: Option<String>,
}

/// Why a request was refused before policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    NoRoute,
    SniMismatch,
    IpNotAllowed,
    ResolveFailed,
    MethodNotAllowed,
    UnsupportedMediaType,
    ParseError,
    InvalidJsonRpc,
    HeaderMismatch,
    BodyTooLarge,
    BodyTimeout,
    /// No valid bearer token where one is required, or a presented token failed verification.
    Unauthenticated,
    /// The identity provider's keys could not be obtained, so a token could not be verified.
    IdentityUnavailable,
    Other,
}

/// A request refused before it reached policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefusalRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Authenticated principal (token subject), when the refusal came after the identity stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    pub reason: RefusalKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What happened upstream after a forwarded request. Fields in key order, like [`DecisionRecord`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutcomeRecord {
    /// Response body bytes passed to the client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// From the request's arrival to the end of the answer's body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    /// Why forwarding failed, the answer's body failed, or the client went away before it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `result.isError` of a `tools/call` answer, when the gateway saw it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    /// From the request's arrival to the upstream's response headers.
    pub latency_us: u64,
    pub request_id: String,
    /// Upstream HTTP status; absent if the upstream could not be reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// Records the writer itself writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Internal {
    SegmentStart(SegmentStart),
    Recovery(Recovery),
    Gap(Gap),
    Checkpoint(Checkpoint),
}

impl Internal {
    pub fn kind(&self) -> &'static str {
        match self {
            Internal::SegmentStart(_) => "segment_start",
            Internal::Recovery(_) => "recovery",
            Internal::Gap(_) => "gap",
            Internal::Checkpoint(_) => "checkpoint",
        }
    }
}

/// First record of every segment; its `prev_hash` is the last hash of the previous segment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentStart {
    /// `open` (gateway start), `rotate` (size/age), `after_failure` (followed by a `gap` record).
    pub reason: String,
    /// File name of the segment before this one (absent at genesis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_segment: Option<String>,
    /// Segments the writer deletes (retention) right after this record is durable.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retention_deleted: Vec<String>,
    pub gateway_version: String,
}

/// What a restart cut from the end of the log (a torn last line after a crash).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recovery {
    /// Segment the bytes were cut from.
    pub segment: String,
    /// Byte offset in that segment where the cut bytes began.
    pub offset: u64,
    pub torn_bytes: u64,
    /// SHA-256 (hex) of the cut bytes.
    pub torn_sha256: String,
    /// Where the bytes are kept (same directory).
    pub moved_to: String,
    /// `unterminated` (no final newline), `unparsable` (a final line that is not a record), `no_records`
    /// (the whole segment held no complete record and was moved aside).
    pub cause: String,
    /// Last record that survived (absent if none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_good_seq: Option<u64>,
}

/// Seqs that were assigned but never confirmed durable (a failed write or `fdatasync`), and records refused
/// while the log was failing. Written right after the `segment_start` (`after_failure`) of the next segment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gap {
    /// First seq not confirmed (absent if the failure happened before any seq was assigned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// Last seq not confirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
    /// Records refused (never given a seq) while the log was failing.
    pub refused: u64,
    /// The error that started the failure.
    pub error: String,
    pub failing_since: String,
}

/// A signed statement of the chain's head: the record with seq `count` has hash `head_hash`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checkpoint {
    pub count: u64,
    pub head_hash: String,
    /// First 16 hex digits of SHA-256 over the raw 32-byte Ed25519 public key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Ed25519 signature (hex) over [`crate::audit::chain::checkpoint_message`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// A record ready for the writer: its kind, its time and the canonical bytes of its `data` object.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub kind: &'static str,
    pub time: String,
    pub data: Vec<u8>,
}

impl Prepared {
    /// Serialises a gateway record now (on the caller's task), stamped with the current time.
    pub fn new(record: &Record) -> Prepared {
        let mut data = Vec::with_capacity(512);
        match record {
            // The per-request records: declared in key order, so direct serialisation is canonical.
            Record::Decision(d) => write_direct(d, &mut data),
            Record::Outcome(o) => write_direct(o, &mut data),
            Record::Refusal(_) | Record::Approval(_) | Record::Tool(_) => {
                canonical_bytes(&record.to_data(), &mut data)
            }
        }
        debug_assert_eq!(
            String::from_utf8_lossy(&data),
            String::from_utf8_lossy(&{
                let mut sorted = Vec::new();
                canonical_bytes(&record.to_data(), &mut sorted);
                sorted
            }),
            "a {} record's fields are not declared in key order",
            record.kind()
        );
        Prepared {
            kind: record.kind(),
            time: format_time(OffsetDateTime::now_utc()),
            data,
        }
    }

    pub fn internal(record: &Internal) -> Prepared {
        Prepared::from_value(record.kind(), &to_object(record))
    }

    fn from_value(kind: &'static str, data: &Value) -> Prepared {
        let mut bytes = Vec::with_capacity(512);
        canonical_bytes(data, &mut bytes);
        Prepared {
            kind,
            time: format_time(OffsetDateTime::now_utc()),
            data: bytes,
        }
    }
}

fn write_direct<T: Serialize>(v: &T, out: &mut Vec<u8>) {
    // Writing these plain structs into a `Vec` cannot fail (string keys, no custom serialisers).
    let _ = serde_json::to_writer(out, v);
}

fn to_object<T: Serialize>(v: &T) -> Value {
    // Serialising these plain structs cannot fail (string keys, no custom serialisers).
    serde_json::to_value(v).unwrap_or_else(|_| Value::Object(Map::new()))
}

/// Appends the canonical bytes of `v` (see the module docs) to `out`.
pub fn canonical_bytes(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut members: Vec<(&String, &Value)> = m.iter().collect();
            members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                canonical_bytes(v, out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_bytes(v, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(v: &Value, out: &mut Vec<u8>) {
    // Writing a scalar into a Vec cannot fail.
    let _ = serde_json::to_writer(out, v);
}

#[cfg(test)]
mod tests;
