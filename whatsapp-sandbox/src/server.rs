//! The routes: Meta's send endpoint, and the admin API under `/sandbox/` (no auth: bind the
//! sandbox to loopback).

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use crate::meta_error::MetaError;
use crate::record::{After, FaultSpec, MessageFilter, Outcome, RecordedMessage, Store};
use crate::statuses::{self, SentMessage};
use crate::validate::{parse_recipient, validate_send, ValidSend};
use crate::{ids, BusinessNumber, SandboxConfig, SandboxOptions, Server, STATUS_DELAY_MS_MAX};

/// Largest send body read; Meta's sends are small (a 4096-character text is ~16 KB).
pub const SEND_BODY_BYTES_MAX: usize = 1024 * 1024;
/// The customer-service window (reference §6.1).
const WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);
const SHUTDOWN_TIMEOUT_SECONDS: u64 = 2;

/// State shared by every worker.
pub(crate) struct Shared {
    pub(crate) config: SandboxConfig,
    pub(crate) store: Store,
    pub(crate) options: Mutex<SandboxOptions>,
    pub(crate) client: reqwest::Client,
}

impl Shared {
    pub(crate) fn options(&self) -> SandboxOptions {
        *self.options.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn number(&self, phone_number_id: &str) -> Option<&BusinessNumber> {
        self.config
            .numbers
            .iter()
            .find(|n| n.phone_number_id == phone_number_id)
    }
}

pub(crate) fn serve(listener: TcpListener, config: SandboxConfig) -> std::io::Result<Server> {
    let client = reqwest::Client::builder()
        .timeout(config.webhook_timeout)
        .build()
        .map_err(std::io::Error::other)?;
    let workers = config.workers.max(1);
    let shared = web::Data::from(Arc::new(Shared {
        store: Store::new(config.recorded_messages_max),
        options: Mutex::new(config.options),
        config,
        client,
    }));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .app_data(web::PayloadConfig::new(64 * 1024))
            .route("/sandbox/health", web::get().to(health))
            .route("/sandbox/messages", web::get().to(list_messages))
            .route("/sandbox/messages", web::delete().to(clear_messages))
            .route("/sandbox/faults", web::post().to(queue_fault))
            .route("/sandbox/faults", web::get().to(list_faults))
            .route("/sandbox/faults", web::delete().to(clear_faults))
            .route(
                "/sandbox/inbound-activity",
                web::post().to(inbound_activity),
            )
            .route("/sandbox/options", web::get().to(get_options))
            .route("/sandbox/options", web::put().to(put_options))
            .route(
                "/{version}/{phone_number_id}/messages",
                web::post().to(send),
            )
            .default_service(web::to(unknown_path))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECONDS)
    .listen(listener)?
    .run();
    Ok(server)
}

fn meta_response(error: &MetaError) -> HttpResponse {
    let status = StatusCode::from_u16(error.http_status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = HttpResponse::build(status);
    if error.code == 190 {
        response.insert_header((
            "WWW-Authenticate",
            "OAuth \"Facebook Platform\" \"invalid_token\" \"Invalid OAuth access token - Cannot parse access token\"",
        ));
    }
    response.json(error.body())
}

/// `POST /{version}/{phone_number_id}/messages`.
#[tracing::instrument(skip_all, fields(phone_number_id = %path.1))]
async fn send(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let (api_version, phone_number_id) = path.into_inner();
    let raw = match read_body(payload, SEND_BODY_BYTES_MAX).await {
        Ok(raw) => raw,
        Err(error) => return meta_response(&error),
    };
    let attempt = Attempt::new(api_version, phone_number_id, &raw);
    match decide(&shared, &request, &attempt, &raw).await {
        Ok((number, send)) => accept(&shared, attempt, number, send),
        Err(error) => {
            tracing::debug!(code = error.code, "send refused");
            shared
                .store
                .record(attempt.into_record(Outcome::Refused, None, Some(error.clone())));
            meta_response(&error)
        }
    }
}

/// Reads the body up to `limit` bytes; more is Meta's invalid-parameter error, not a panic.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<Vec<u8>, MetaError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|_| MetaError::invalid_parameter("The request body could not be read."))?;
        if body.len() + chunk.len() > limit {
            return Err(MetaError {
                http_status: 413,
                ..MetaError::invalid_parameter(format!(
                    "The request body must be at most {limit} bytes."
                ))
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What is known of a send before deciding on it, for the record.
struct Attempt {
    api_version: String,
    phone_number_id: String,
    body: Value,
}

impl Attempt {
    fn new(api_version: String, phone_number_id: String, raw: &[u8]) -> Self {
        let body = serde_json::from_slice(raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw).into_owned()));
        Self {
            api_version,
            phone_number_id,
            body,
        }
    }

    fn into_record(
        self,
        outcome: Outcome,
        wamid: Option<String>,
        error: Option<MetaError>,
    ) -> RecordedMessage {
        let to = self
            .body
            .get("to")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let recipient = to.as_deref().and_then(|to| parse_recipient(to).ok());
        let message_type = match self.body.get("type") {
            Some(Value::String(t)) => Some(t.clone()),
            None if self.body.is_object() => Some("text".to_owned()),
            _ => None,
        };
        RecordedMessage {
            sequence: 0,
            received_at: Utc::now(),
            api_version: self.api_version,
            phone_number_id: self.phone_number_id,
            to,
            recipient,
            message_type,
            outcome,
            wamid,
            error,
            body: self.body,
            statuses: Vec::new(),
        }
    }
}

/// The checks in Meta's order as far as it is observable: token, sender, body; then the
/// sandbox's injected faults (only valid sends consume them) and the 24-hour window.
async fn decide(
    shared: &Shared,
    request: &HttpRequest,
    attempt: &Attempt,
    raw: &[u8],
) -> Result<(BusinessNumber, ValidSend), MetaError> {
    let token = bearer_token(request).ok_or_else(MetaError::invalid_token)?;
    let number = shared
        .number(&attempt.phone_number_id)
        .ok_or_else(|| MetaError::unknown_phone_number_id(&attempt.phone_number_id))?;
    if number
        .access_token
        .as_deref()
        .is_some_and(|expected| expected != token)
    {
        return Err(MetaError::invalid_token());
    }
    let send = validate_send(raw)?;
    if let Some(fault) = shared
        .store
        .take_fault(&number.phone_number_id, &send.wa_id)
    {
        if let Some(delay) = fault.delay {
            tokio::time::sleep(delay).await;
        }
        if let Some(error) = fault.error {
            return Err(error);
        }
    }
    if shared.options().enforce_window && !send.kind.is_template() {
        let open = shared
            .store
            .last_inbound(&number.phone_number_id, &send.wa_id)
            .is_some_and(|last| Utc::now() - last < WINDOW);
        if !open {
            return Err(MetaError::from_code(131047));
        }
    }
    Ok((number.clone(), send))
}

fn bearer_token(request: &HttpRequest) -> Option<&str> {
    let header = request.headers().get("authorization")?.to_str().ok()?;
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn accept(
    shared: &web::Data<Shared>,
    attempt: Attempt,
    number: BusinessNumber,
    send: ValidSend,
) -> HttpResponse {
    let wamid = ids::wamid();
    let sequence =
        shared
            .store
            .record(attempt.into_record(Outcome::Accepted, Some(wamid.clone()), None));
    let mut message = json!({ "id": wamid });
    if send.kind.is_template() {
        message["message_status"] = json!("accepted");
    }
    let response = json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": send.to_input, "wa_id": send.wa_id }],
        "messages": [message],
    });
    let sent = SentMessage {
        sequence,
        wamid,
        number,
        recipient: send.wa_id,
        kind: send.kind,
        biz_opaque_callback_data: send.biz_opaque_callback_data,
    };
    // The status webhooks never delay the send's answer.
    actix_web::rt::spawn(statuses::deliver(shared.clone().into_inner(), sent));
    HttpResponse::Ok().json(response)
}

fn admin_error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message.into() }))
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

#[derive(Deserialize)]
struct MessagesQuery {
    to: Option<String>,
    after: Option<String>,
    outcome: Option<Outcome>,
}

/// `GET /sandbox/messages?to=<digits>&after=<sequence|RFC 3339>&outcome=accepted|refused`.
async fn list_messages(request: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let query = match web::Query::<MessagesQuery>::from_query(request.query_string()) {
        Ok(query) => query.into_inner(),
        Err(e) => return admin_error(StatusCode::BAD_REQUEST, format!("invalid query: {e}")),
    };
    let after = match query.after.as_deref().map(|a| After::parse(a).ok_or(a)) {
        None => None,
        Some(Ok(after)) => Some(after),
        Some(Err(raw)) => {
            return admin_error(
                StatusCode::BAD_REQUEST,
                format!("after must be a sequence number or an RFC 3339 time, got `{raw}`"),
            )
        }
    };
    let filter = MessageFilter {
        to: query.to,
        after,
        outcome: query.outcome,
    };
    let last_sequence = shared.store.last_sequence();
    let messages = shared.store.list(&filter);
    HttpResponse::Ok().json(json!({ "messages": messages, "last_sequence": last_sequence }))
}

async fn clear_messages(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "cleared": shared.store.clear_messages() }))
}

/// `POST /sandbox/faults` with one fault or an array of them.
async fn queue_fault(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let specs: Vec<FaultSpec> = match parse_json::<Value>(&body) {
        Ok(Value::Array(items)) => match items.into_iter().map(serde_json::from_value).collect() {
            Ok(specs) => specs,
            Err(e) => return admin_error(StatusCode::BAD_REQUEST, format!("invalid fault: {e}")),
        },
        Ok(item) => match serde_json::from_value(item) {
            Ok(spec) => vec![spec],
            Err(e) => return admin_error(StatusCode::BAD_REQUEST, format!("invalid fault: {e}")),
        },
        Err(message) => return admin_error(StatusCode::BAD_REQUEST, message),
    };
    let mut queued = Vec::new();
    for spec in specs {
        match shared.store.queue_fault(spec) {
            Ok(fault) => queued.push(fault),
            Err(message) => return admin_error(StatusCode::BAD_REQUEST, message),
        }
    }
    HttpResponse::Created().json(json!({ "queued": queued }))
}

async fn list_faults(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "faults": shared.store.faults() }))
}

async fn clear_faults(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "cleared": shared.store.clear_faults() }))
}

#[derive(Deserialize)]
struct InboundActivity {
    /// The customer's number (`+` optional).
    from: String,
    /// Default: the first configured number.
    phone_number_id: Option<String>,
    /// Default: now. A time more than 24 h ago closes the window.
    at: Option<DateTime<Utc>>,
}

/// `POST /sandbox/inbound-activity`: the customer wrote to the business (opens the window).
async fn inbound_activity(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let activity: InboundActivity = match parse_json(&body) {
        Ok(activity) => activity,
        Err(message) => return admin_error(StatusCode::BAD_REQUEST, message),
    };
    let Ok(wa_id) = parse_recipient(&activity.from) else {
        return admin_error(StatusCode::BAD_REQUEST, "from must be a phone number");
    };
    let phone_number_id = activity
        .phone_number_id
        .or_else(|| {
            shared
                .config
                .numbers
                .first()
                .map(|n| n.phone_number_id.clone())
        })
        .unwrap_or_default();
    let at = activity.at.unwrap_or_else(Utc::now);
    shared.store.note_inbound(&phone_number_id, &wa_id, at);
    HttpResponse::Ok().json(json!({ "phone_number_id": phone_number_id, "wa_id": wa_id, "at": at }))
}

async fn get_options(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(shared.options())
}

#[derive(Deserialize)]
struct OptionsPatch {
    enforce_window: Option<bool>,
    status_order: Option<crate::StatusOrder>,
    status_delay_ms: Option<u64>,
}

/// `PUT /sandbox/options`: change any of the options; answers the options now in force.
async fn put_options(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let patch: OptionsPatch = match parse_json(&body) {
        Ok(patch) => patch,
        Err(message) => return admin_error(StatusCode::BAD_REQUEST, message),
    };
    if patch
        .status_delay_ms
        .is_some_and(|d| d > STATUS_DELAY_MS_MAX)
    {
        return admin_error(
            StatusCode::BAD_REQUEST,
            format!("status_delay_ms must be at most {STATUS_DELAY_MS_MAX}"),
        );
    }
    let mut options = shared.options.lock().unwrap_or_else(|e| e.into_inner());
    options.enforce_window = patch.enforce_window.unwrap_or(options.enforce_window);
    options.status_order = patch.status_order.unwrap_or(options.status_order);
    options.status_delay_ms = patch.status_delay_ms.unwrap_or(options.status_delay_ms);
    HttpResponse::Ok().json(*options)
}

/// Graph's answer to a path it does not know.
async fn unknown_path(request: HttpRequest) -> HttpResponse {
    let error = MetaError {
        code: 2500,
        http_status: 400,
        message: format!("Unknown path components: {}", request.path()),
        details: None,
        subcode: None,
    };
    meta_response(&error)
}
