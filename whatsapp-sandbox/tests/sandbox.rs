//! The sandbox over real HTTP: it runs on port 0, and a small actix server stands in for the
//! ingest endpoint, verifying every status webhook with `webhook_ingest::signature`.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use webhook_ingest::signature::{verify_signature, AppSecret};
use whatsapp_sandbox::{
    After, BusinessNumber, SandboxConfig, SandboxOptions, Simulator, StatusOrder, WebhookDelivery,
};

const SECRET: &str = "test_app_secret";
const PHONE_NUMBER_ID: &str = "106540352242922";
const OPEN_PHONE_NUMBER_ID: &str = "106540352242923";
const DISPLAY_NUMBER: &str = "15550783881";
const TOKEN: &str = "sandbox-token";
const CUSTOMER: &str = "+2348012345678";
const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/whatsapp/pywa"
);

fn secret() -> AppSecret {
    AppSecret::new(SECRET).unwrap()
}

fn business() -> BusinessNumber {
    BusinessNumber {
        phone_number_id: PHONE_NUMBER_ID.into(),
        display_phone_number: DISPLAY_NUMBER.into(),
        waba_id: "102290129340398".into(),
        access_token: Some(TOKEN.into()),
    }
}

/// A webhook the stand-in ingest endpoint received.
#[derive(Clone, Debug)]
struct Received {
    json: Value,
    signature_ok: bool,
}

/// The stand-in for the ingest endpoint: records every POST, verifies its signature, and
/// refuses the first `refuse_first` with a 503.
struct Ingest {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    refuse_first: Arc<AtomicU32>,
}

struct IngestState {
    received: Arc<Mutex<Vec<Received>>>,
    refuse_first: Arc<AtomicU32>,
}

async fn ingest_webhook(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<IngestState>,
) -> HttpResponse {
    if state
        .refuse_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return HttpResponse::ServiceUnavailable().finish();
    }
    let header = request
        .headers()
        .get("x-hub-signature-256")
        .and_then(|h| h.to_str().ok());
    let signature_ok = verify_signature(&secret(), &body, header).is_ok();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state
        .received
        .lock()
        .unwrap()
        .push(Received { json, signature_ok });
    if signature_ok {
        HttpResponse::Ok().finish()
    } else {
        HttpResponse::Unauthorized().finish()
    }
}

impl Ingest {
    fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let refuse_first = Arc::new(AtomicU32::new(0));
        let state = web::Data::new(IngestState {
            received: received.clone(),
            refuse_first: refuse_first.clone(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/webhooks/whatsapp",
            listener.local_addr().unwrap()
        );
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/webhooks/whatsapp", web::post().to(ingest_webhook))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self {
            url,
            received,
            refuse_first,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The statuses received for `wamid`, in arrival order.
    fn statuses_of(&self, wamid: &str) -> Vec<(String, Value, bool)> {
        self.received()
            .into_iter()
            .filter_map(|r| {
                let status = r
                    .json
                    .pointer("/entry/0/changes/0/value/statuses/0")?
                    .clone();
                (status["id"] == wamid).then(|| {
                    (
                        status["status"].as_str().unwrap_or("").to_owned(),
                        r.json.clone(),
                        r.signature_ok,
                    )
                })
            })
            .collect()
    }

    /// Polls (no blind sleeps) until `wamid` has `count` statuses or 5 s pass.
    async fn wait_for_statuses(&self, wamid: &str, count: usize) -> Vec<(String, Value, bool)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let statuses = self.statuses_of(wamid);
            if statuses.len() >= count || tokio::time::Instant::now() > deadline {
                return statuses;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

struct Sandbox {
    url: String,
    client: reqwest::Client,
    ingest: Ingest,
}

impl Sandbox {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut SandboxConfig)) -> Self {
        let ingest = Ingest::start();
        let open_number = BusinessNumber {
            phone_number_id: OPEN_PHONE_NUMBER_ID.into(),
            access_token: None,
            ..business()
        };
        let mut config = SandboxConfig::new(
            secret(),
            Some(ingest.url.clone()),
            vec![business(), open_number],
        );
        config.options = SandboxOptions {
            status_delay_ms: 10,
            ..SandboxOptions::default()
        };
        config.webhook_backoff_initial = Duration::from_millis(20);
        adjust(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(whatsapp_sandbox::serve(listener, config).unwrap());
        Self {
            url,
            client: reqwest::Client::new(),
            ingest,
        }
    }

    async fn send_as(
        &self,
        phone_number_id: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}/v25.0/{phone_number_id}/messages", self.url))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn send(&self, body: &Value) -> (u16, Value) {
        self.send_as(PHONE_NUMBER_ID, Some(TOKEN), body).await
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn messages(&self, query: &str) -> Vec<Value> {
        let (status, page) = self
            .admin(
                reqwest::Method::GET,
                &format!("/sandbox/messages{query}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        page["messages"].as_array().unwrap().clone()
    }

    async fn fault(&self, fault: Value) {
        let (status, body) = self
            .admin(reqwest::Method::POST, "/sandbox/faults", Some(fault))
            .await;
        assert_eq!(status, 201, "{body}");
    }
}

fn text(body: &str) -> Value {
    json!({"messaging_product":"whatsapp","recipient_type":"individual","to":CUSTOMER,"type":"text","text":{"preview_url":false,"body":body}})
}

fn buttons() -> Value {
    json!({"messaging_product":"whatsapp","to":CUSTOMER,"type":"interactive","interactive":{"type":"button",
        "header":{"type":"text","text":"Rewards"},"body":{"text":"Redeem 100 points for a free coffee?"},"footer":{"text":"Cafe Aroma"},
        "action":{"buttons":[{"type":"reply","reply":{"id":"redeem:coffee:100","title":"Redeem"}},{"type":"reply","reply":{"id":"balance","title":"My balance"}}]}}})
}

fn list() -> Value {
    json!({"messaging_product":"whatsapp","to":CUSTOMER,"type":"interactive","interactive":{"type":"list",
        "body":{"text":"Choose a reward"},"action":{"button":"Rewards","sections":[{"title":"Drinks","rows":[
            {"id":"rw:latte","title":"Latte","description":"150 points"},{"id":"rw:tea","title":"Tea"}]}]}}})
}

fn template() -> Value {
    json!({"messaging_product":"whatsapp","to":CUSTOMER,"type":"template","template":{"name":"points_update","language":{"code":"en_US"},
        "components":[{"type":"body","parameters":[{"type":"text","text":"Ana"},{"type":"text","text":"120"}]}]}})
}

fn assert_meta_error(status: u16, body: &Value, want_status: u16, want_code: u64) {
    assert_eq!(status, want_status, "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], want_code, "{body}");
    assert_eq!(error["type"], "OAuthException", "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        error["fbtrace_id"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
}

fn details(body: &Value) -> &str {
    body["error"]["error_data"]["details"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_sends_get_meta_success_bodies_with_distinct_wamids() {
    let sandbox = Sandbox::start().await;
    let mut wamids = BTreeSet::new();
    for body in [
        text("You now have 120 points."),
        buttons(),
        list(),
        template(),
    ] {
        let (status, answer) = sandbox.send(&body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["messaging_product"], "whatsapp");
        assert_eq!(
            answer["contacts"],
            json!([{"input": CUSTOMER, "wa_id": "2348012345678"}])
        );
        let wamid = answer["messages"][0]["id"].as_str().unwrap().to_owned();
        assert!(wamid.starts_with("wamid."), "{wamid}");
        wamids.insert(wamid);
        let templated = body["type"] == "template";
        assert_eq!(
            answer["messages"][0].get("message_status").is_some(),
            templated,
            "{answer}"
        );
    }
    assert_eq!(wamids.len(), 4, "every send gets its own wamid");
    // A number configured without a token accepts any non-empty bearer token.
    let (status, answer) = sandbox
        .send_as(OPEN_PHONE_NUMBER_ID, Some("anything"), &text("hi"))
        .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_limit_just_over_the_edge_is_a_meta_400_naming_the_problem() {
    let sandbox = Sandbox::start().await;
    let long = |n: usize| "x".repeat(n);
    let button = |id: &str, title: &str| json!({"type":"reply","reply":{"id":id,"title":title}});
    let rows = |n: usize| {
        Value::Array(
            (0..n)
                .map(|i| json!({"id":format!("r{i}"),"title":format!("Row {i}")}))
                .collect(),
        )
    };
    let mut cases: Vec<(Value, &str)> = Vec::new();
    cases.push((text(&long(4097)), "text['body'] must be at most 4096"));
    cases.push((text(""), "text['body'] must be at least 1"));
    let mut b = buttons();
    b["interactive"]["body"]["text"] = json!(long(1025));
    cases.push((b, "interactive['body']['text'] must be at most 1024"));
    let mut b = buttons();
    b["interactive"]["header"]["text"] = json!(long(61));
    cases.push((b, "interactive['header']['text'] must be at most 60"));
    let mut b = buttons();
    b["interactive"]["footer"]["text"] = json!(long(61));
    cases.push((b, "interactive['footer']['text'] must be at most 60"));
    let mut b = buttons();
    b["interactive"]["action"]["buttons"] = json!([
        button("a", "A"),
        button("b", "B"),
        button("c", "C"),
        button("d", "D")
    ]);
    cases.push((b, "between 1 and 3 elements - got 4"));
    let mut b = buttons();
    b["interactive"]["action"]["buttons"] = json!([button("a", &long(21))]);
    cases.push((b, "['title'] must be at most 20"));
    let mut b = buttons();
    b["interactive"]["action"]["buttons"] = json!([button(&long(257), "A")]);
    cases.push((b, "['id'] must be at most 256"));
    let mut b = buttons();
    b["interactive"]["action"]["buttons"] = json!([button("a", "A"), button("a", "B")]);
    cases.push((b, "Duplicate button id"));
    let mut l = list();
    l["interactive"]["action"]["button"] = json!(long(21));
    cases.push((l, "interactive['action']['button'] must be at most 20"));
    let mut l = list();
    l["interactive"]["action"]["sections"] = Value::Array(
        (0..11)
            .map(|i| json!({"title":format!("S{i}"),"rows":[{"id":format!("r{i}"),"title":"x"}]}))
            .collect(),
    );
    cases.push((l, "between 1 and 10 elements - got 11"));
    let mut l = list();
    l["interactive"]["action"]["sections"] = json!([{"title":"A","rows":rows(6)},{"title":"B","rows":[{"id":"b0","title":"1"},{"id":"b1","title":"2"},{"id":"b2","title":"3"},{"id":"b3","title":"4"},{"id":"b4","title":"5"}]}]);
    cases.push((l, "at most 10 rows in total"));
    let mut l = list();
    l["interactive"]["action"]["sections"][0]["rows"][0]["title"] = json!(long(25));
    cases.push((l, "['rows'][0]['title'] must be at most 24"));
    let mut l = list();
    l["interactive"]["action"]["sections"][0]["rows"][0]["description"] = json!(long(73));
    cases.push((l, "['description'] must be at most 72"));
    let mut l = list();
    l["interactive"]["action"]["sections"][0]["title"] = json!(long(25));
    cases.push((l, "['sections'][0]['title'] must be at most 24"));
    let mut l = list();
    l["interactive"]["action"]["sections"][0]["rows"][0]["id"] = json!(long(201));
    cases.push((l, "['rows'][0]['id'] must be at most 200"));
    let mut l = list();
    l["interactive"]["action"]["sections"][0]["rows"][1]["id"] = json!("rw:latte");
    cases.push((l, "Duplicate row id"));
    let mut t = template();
    t["template"].as_object_mut().unwrap().remove("name");
    cases.push((t, "template['name'] is required"));
    let mut t = template();
    t["template"]["language"] = json!({});
    cases.push((t, "template['language']['code'] is required"));
    let mut m = text("hi");
    m["messaging_product"] = json!("sms");
    cases.push((m, "messaging_product must be one of"));
    let mut m = text("hi");
    m["to"] = json!("not-a-number");
    cases.push((m, "Param to must be a phone number"));
    for (body, fragment) in cases {
        let (status, answer) = sandbox.send(&body).await;
        assert_meta_error(status, &answer, 400, 100);
        assert_eq!(
            answer["error"]["error_data"]["messaging_product"],
            "whatsapp"
        );
        assert!(
            details(&answer).contains(fragment),
            "`{}` lacks `{fragment}`",
            details(&answer)
        );
    }
    let mut image = text("hi");
    image["type"] = json!("image");
    let (status, answer) = sandbox.send(&image).await;
    assert_meta_error(status, &answer, 400, 131051);
    let refused = sandbox.messages("?outcome=refused").await;
    assert_eq!(refused.len(), 22, "every refusal is recorded");
    assert!(sandbox.messages("?outcome=accepted").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bodies_are_meta_errors_never_5xx() {
    let sandbox = Sandbox::start().await;
    let url = format!("{}/v25.0/{PHONE_NUMBER_ID}/messages", sandbox.url);
    let huge = vec![b'x'; 1024 * 1024 + 1];
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        vec![0xff, 0xfe, 0x00],
        br#"{"messaging_product":"whatsapp","to":"+1","type":"text","text":{"body":"hi"}}"#.to_vec(),
        br#"{"messaging_product":"whatsapp","to":"2348012345678","type":"interactive","interactive":[]}"#.to_vec(),
        huge,
    ];
    for body in bodies {
        let response = sandbox
            .client
            .post(&url)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        assert!((400..500).contains(&status), "{status} {answer}");
        assert_eq!(answer["error"]["code"], 100, "{answer}");
    }
    let (status, answer) = sandbox
        .admin(reqwest::Method::GET, "/v25.0/nothing/here", None)
        .await;
    assert_meta_error(status, &answer, 400, 2500);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_or_missing_token_is_401_code_190_and_an_unknown_number_is_refused() {
    let sandbox = Sandbox::start().await;
    for token in [None, Some("wrong-token")] {
        let (status, answer) = sandbox.send_as(PHONE_NUMBER_ID, token, &text("hi")).await;
        assert_meta_error(status, &answer, 401, 190);
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("access token"));
    }
    let (status, answer) = sandbox.send_as("999", Some(TOKEN), &text("hi")).await;
    assert_meta_error(status, &answer, 400, 100);
    assert_eq!(answer["error"]["error_subcode"], 33);
    assert_eq!(sandbox.messages("?outcome=refused").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn injected_130429_twice_then_the_third_send_succeeds_and_all_three_are_recorded() {
    let sandbox = Sandbox::start().await;
    sandbox
        .fault(json!({"code":130429,"times":2,"to":CUSTOMER}))
        .await;
    // Another recipient is not affected by a fault aimed at CUSTOMER.
    let mut other = text("hi");
    other["to"] = json!("+2348099999999");
    assert_eq!(sandbox.send(&other).await.0, 200);
    for _ in 0..2 {
        let (status, answer) = sandbox.send(&text("retry me")).await;
        assert_meta_error(status, &answer, 400, 130429);
        assert_eq!(answer["error"]["message"], "(#130429) Rate limit hit");
        assert!(details(&answer).contains("too many messages"));
    }
    let (status, answer) = sandbox.send(&text("retry me")).await;
    assert_eq!(status, 200, "{answer}");
    let recorded = sandbox.messages("?to=2348012345678").await;
    let outcomes: Vec<&str> = recorded
        .iter()
        .map(|m| m["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["refused", "refused", "accepted"]);
    assert_eq!(recorded[0]["error"]["code"], 130429);
    assert_eq!(recorded[2]["wamid"], answer["messages"][0]["id"]);
    assert_eq!(recorded[2]["body"], text("retry me"));
    let (_, faults) = sandbox
        .admin(reqwest::Method::GET, "/sandbox/faults", None)
        .await;
    assert_eq!(faults["faults"], json!([]), "the fault was used up");
}

#[tokio::test(flavor = "multi_thread")]
async fn injected_131047_5xx_429_and_delay_have_meta_bodies() {
    let sandbox = Sandbox::start().await;
    sandbox
        .fault(json!([
            {"code":131047},
            {"http_status":503},
            {"http_status":500},
            {"code":130429,"http_status":429},
            {"code":131056},
            {"code":131026},
            {"code":131000}
        ]))
        .await;
    let (status, answer) = sandbox.send(&text("hi")).await;
    assert_meta_error(status, &answer, 400, 131047);
    assert!(details(&answer).contains("24 hours"));
    let (status, answer) = sandbox.send(&text("hi")).await;
    assert_meta_error(status, &answer, 503, 2);
    assert_eq!(answer["error"]["is_transient"], true);
    let (status, answer) = sandbox.send(&text("hi")).await;
    assert_meta_error(status, &answer, 500, 1);
    let (status, answer) = sandbox.send(&text("hi")).await;
    assert_meta_error(status, &answer, 429, 130429);
    for code in [131056, 131026, 131000] {
        let (status, answer) = sandbox.send(&text("hi")).await;
        assert_meta_error(status, &answer, 400, code);
        assert!(!details(&answer).is_empty());
    }
    // A delay alone: the send is held, then accepted (a client that timed out sent it anyway).
    sandbox.fault(json!({"delay_ms":300})).await;
    let started = std::time::Instant::now();
    let (status, _) = sandbox.send(&text("slow")).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Bad fault specs are refused.
    for bad in [
        json!({}),
        json!({"http_status":429}),
        json!({"code":1,"times":0}),
        json!("x"),
    ] {
        let (status, _) = sandbox
            .admin(reqwest::Method::POST, "/sandbox/faults", Some(bad))
            .await;
        assert_eq!(status, 400);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_24_hour_window_refuses_free_form_but_not_templates() {
    let sandbox = Sandbox::start_with(|config| config.options.enforce_window = true).await;
    let (status, answer) = sandbox.send(&text("hello?")).await;
    assert_meta_error(status, &answer, 400, 131047);
    assert_eq!(
        sandbox.send(&template()).await.0,
        200,
        "templates are allowed outside the window"
    );
    let long_ago = (chrono::Utc::now() - chrono::TimeDelta::hours(25)).to_rfc3339();
    let activity = json!({"from":CUSTOMER,"phone_number_id":PHONE_NUMBER_ID,"at":long_ago});
    assert_eq!(
        sandbox
            .admin(
                reqwest::Method::POST,
                "/sandbox/inbound-activity",
                Some(activity)
            )
            .await
            .0,
        200
    );
    assert_eq!(
        sandbox.send(&text("hello?")).await.0,
        400,
        "25 h ago: closed"
    );
    // The simulator reports the customer's message to the sandbox: the window opens.
    let simulator = Simulator::new(sandbox.ingest.url.clone(), secret(), business())
        .with_sandbox(sandbox.url.clone());
    simulator.say(CUSTOMER, "points").await.unwrap();
    assert_eq!(sandbox.send(&text("You have 120 points.")).await.0, 200);
    let (_, options) = sandbox
        .admin(
            reqwest::Method::PUT,
            "/sandbox/options",
            Some(json!({"enforce_window": false})),
        )
        .await;
    assert_eq!(options["enforce_window"], false);
    let mut other = text("hi");
    other["to"] = json!("+2348099999999");
    assert_eq!(
        sandbox.send(&other).await.0,
        200,
        "window no longer enforced"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn statuses_sent_delivered_read_arrive_signed_in_order() {
    let sandbox = Sandbox::start().await;
    let mut body = buttons();
    body["biz_opaque_callback_data"] = json!("txn-42");
    let (_, answer) = sandbox.send(&body).await;
    let wamid = answer["messages"][0]["id"].as_str().unwrap().to_owned();
    let statuses = sandbox.ingest.wait_for_statuses(&wamid, 3).await;
    let names: Vec<&str> = statuses.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["sent", "delivered", "read"]);
    let mut previous = 0;
    for (name, webhook, signature_ok) in &statuses {
        assert!(
            signature_ok,
            "{name} verifies with webhook_ingest::signature"
        );
        assert_eq!(webhook["object"], "whatsapp_business_account");
        assert_eq!(webhook["entry"][0]["id"], "102290129340398");
        let change = &webhook["entry"][0]["changes"][0];
        assert_eq!(change["field"], "messages");
        assert_eq!(change["value"]["messaging_product"], "whatsapp");
        assert_eq!(
            change["value"]["metadata"],
            json!({"display_phone_number":DISPLAY_NUMBER,"phone_number_id":PHONE_NUMBER_ID})
        );
        let status = &change["value"]["statuses"][0];
        assert_eq!(status["recipient_id"], "2348012345678");
        assert_eq!(status["biz_opaque_callback_data"], "txn-42");
        let timestamp: i64 = status["timestamp"].as_str().unwrap().parse().unwrap();
        assert!(timestamp >= previous);
        previous = timestamp;
    }
    // Same keys as the fixture's status case (minus the optional conversation/contacts).
    let fixture = fixture("message_status.json", "sent");
    let fixture_status = &fixture["entry"][0]["changes"][0]["value"]["statuses"][0];
    let ours = &statuses[0].1["entry"][0]["changes"][0]["value"]["statuses"][0];
    for key in ["id", "status", "timestamp", "recipient_id", "pricing"] {
        assert!(
            fixture_status.get(key).is_some() && ours.get(key).is_some(),
            "{key}"
        );
    }
    // The sandbox's record shows the timeline and the deliveries.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let recorded = sandbox.messages("").await;
        let timeline = recorded[0]["statuses"].as_array().unwrap().clone();
        let delivered = timeline
            .iter()
            .filter(|s| s["delivery"] == "delivered")
            .count();
        if delivered == 3 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{timeline:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn statuses_arrive_out_of_order_when_asked() {
    let sandbox = Sandbox::start_with(|config| {
        config.options.status_order = StatusOrder::ReadBeforeDelivered
    })
    .await;
    let (_, answer) = sandbox.send(&text("hi")).await;
    let wamid = answer["messages"][0]["id"].as_str().unwrap().to_owned();
    let statuses = sandbox.ingest.wait_for_statuses(&wamid, 3).await;
    let names: Vec<&str> = statuses.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["sent", "read", "delivered"]);
    assert!(statuses.iter().all(|s| s.2), "all signed");
    let timestamp = |i: usize| -> i64 {
        statuses[i].1["entry"][0]["changes"][0]["value"]["statuses"][0]["timestamp"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        timestamp(1) >= timestamp(2),
        "read is not older than delivered"
    );
    // And back in order at run time.
    let (status, options) = sandbox
        .admin(
            reqwest::Method::PUT,
            "/sandbox/options",
            Some(json!({"status_order":"in_order"})),
        )
        .await;
    assert_eq!(
        (status, &options["status_order"]),
        (200, &json!("in_order"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_status_webhook_is_retried_and_never_delays_the_send() {
    let sandbox = Sandbox::start().await;
    sandbox.ingest.refuse_first.store(2, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let (status, answer) = sandbox.send(&text("hi")).await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "the answer does not wait for webhooks"
    );
    let wamid = answer["messages"][0]["id"].as_str().unwrap().to_owned();
    let statuses = sandbox.ingest.wait_for_statuses(&wamid, 3).await;
    assert_eq!(statuses.len(), 3, "delivered after two refusals");
    let recorded = sandbox.messages("").await;
    assert_eq!(recorded[0]["statuses"][0]["status"], "sent");
    assert_eq!(recorded[0]["statuses"][0]["attempts"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_ingest_marks_statuses_failed() {
    let sandbox = Sandbox::start_with(|config| {
        config.webhook_url = Some("http://127.0.0.1:9/unreachable".into());
        config.webhook_attempts_max = 2;
    })
    .await;
    assert_eq!(sandbox.send(&text("hi")).await.0, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let recorded = sandbox.messages("").await;
        let timeline: Vec<WebhookDelivery> = serde_json::from_value(
            recorded[0]["statuses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["delivery"].clone())
                .collect(),
        )
        .unwrap();
        if timeline.len() == 3 && timeline.iter().all(|d| *d == WebhookDelivery::Failed) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{timeline:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn fixture(file: &str, case: &str) -> Value {
    let raw = std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
    let cases: Value = serde_json::from_str(&raw).unwrap();
    cases[case].clone()
}

/// Every path of keys (`entry[].changes[].value.metadata.phone_number_id`, …) in a JSON value.
fn key_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let path = format!("{prefix}.{key}");
                out.insert(path.clone());
                key_paths(child, &path, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                key_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

fn shape(value: &Value) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    key_paths(value, "", &mut paths);
    paths
}

/// The fixture's shape without the 2026 BSUID fields, which a phone-number customer may lack.
fn fixture_shape(value: &Value) -> BTreeSet<String> {
    shape(value)
        .into_iter()
        .filter(|p| !p.contains("user_id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn say_posts_a_signed_body_shaped_like_the_fixture() {
    let ingest = Ingest::start();
    let inbound = whatsapp_sandbox::say(
        &ingest.url,
        &secret(),
        CUSTOMER,
        DISPLAY_NUMBER,
        PHONE_NUMBER_ID,
        "points",
    )
    .await
    .unwrap();
    assert_eq!(inbound.http_status, 200);
    // The exact bytes verify with the ingest's own check, and only those bytes.
    verify_signature(&secret(), &inbound.body, Some(&inbound.signature)).unwrap();
    let mut tampered = inbound.body.clone();
    tampered.push(b' ');
    assert!(verify_signature(&secret(), &tampered, Some(&inbound.signature)).is_err());
    let received = ingest.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].signature_ok);

    let body: Value = serde_json::from_slice(&inbound.body).unwrap();
    assert_eq!(
        shape(&body),
        fixture_shape(&fixture("message.json", "text"))
    );
    let message = &body["entry"][0]["changes"][0]["value"]["messages"][0];
    assert_eq!(message["from"], "2348012345678");
    assert_eq!(message["id"], inbound.wamid);
    assert_eq!(message["type"], "text");
    assert_eq!(message["text"]["body"], "points");
    assert!(message["timestamp"]
        .as_str()
        .unwrap()
        .parse::<i64>()
        .is_ok());
    let value = &body["entry"][0]["changes"][0]["value"];
    assert_eq!(value["metadata"]["phone_number_id"], PHONE_NUMBER_ID);
    assert_eq!(value["metadata"]["display_phone_number"], DISPLAY_NUMBER);
    assert_eq!(value["contacts"][0]["wa_id"], "2348012345678");

    // Interactive replies have the shapes of callback_button.json and callback_selection.json.
    let simulator = Simulator::new(ingest.url.clone(), secret(), business());
    let button = simulator
        .say_button(CUSTOMER, Some("wamid.ours"), "balance", "My balance")
        .await
        .unwrap();
    let button: Value = serde_json::from_slice(&button.body).unwrap();
    assert_eq!(
        shape(&button),
        fixture_shape(&fixture("callback_button.json", "button"))
    );
    let row = simulator
        .say_list_reply(
            CUSTOMER,
            Some("wamid.ours"),
            "rw:latte",
            "Latte",
            Some("150 points"),
        )
        .await
        .unwrap();
    let row: Value = serde_json::from_slice(&row.body).unwrap();
    assert_eq!(
        shape(&row),
        fixture_shape(&fixture("callback_selection.json", "description"))
    );
    assert!(ingest.received().iter().all(|r| r.signature_ok));

    // An ingest that refuses (here: signed with another secret) is an error, not a success.
    let wrong = AppSecret::new("another secret").unwrap();
    let error = whatsapp_sandbox::say(
        &ingest.url,
        &wrong,
        CUSTOMER,
        DISPLAY_NUMBER,
        PHONE_NUMBER_ID,
        "points",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            whatsapp_sandbox::SimulatorError::Refused { status: 401, .. }
        ),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn recording_filters_by_recipient_and_after_and_clears() {
    let sandbox = Sandbox::start().await;
    let mut other = text("for someone else");
    other["to"] = json!("2348099999999");
    sandbox.send(&text("one")).await;
    sandbox.send(&other).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    sandbox.send(&text("two")).await;

    let mine = sandbox.messages("?to=%2B2348012345678").await;
    let texts: Vec<&str> = mine
        .iter()
        .map(|m| m["body"]["text"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "two"]);
    assert_eq!(mine[0]["type"], "text");
    assert_eq!(mine[0]["phone_number_id"], PHONE_NUMBER_ID);
    assert_eq!(mine[0]["api_version"], "v25.0");
    let first = mine[0]["sequence"].as_u64().unwrap();
    let after_first = sandbox.messages(&format!("?after={first}")).await;
    assert_eq!(after_first.len(), 2);
    let after_time = sandbox
        .messages(&format!("?after={}", After::Time(between).to_query()))
        .await;
    assert_eq!(after_time.len(), 1);
    assert_eq!(after_time[0]["body"]["text"]["body"], "two");
    let (status, _) = sandbox
        .admin(
            reqwest::Method::GET,
            "/sandbox/messages?after=yesterday",
            None,
        )
        .await;
    assert_eq!(status, 400);

    let (_, cleared) = sandbox
        .admin(reqwest::Method::DELETE, "/sandbox/messages", None)
        .await;
    assert_eq!(cleared["cleared"], 3);
    assert!(sandbox.messages("").await.is_empty());
    sandbox.send(&text("three")).await;
    let again = sandbox.messages("").await;
    assert!(
        again[0]["sequence"].as_u64().unwrap() > first + 2,
        "sequences never repeat"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_for_replies_returns_the_replies_after_a_point_in_time() {
    let sandbox = Sandbox::start().await;
    sandbox.send(&text("an old reply")).await;
    let since = After::Time(chrono::Utc::now());
    let nothing = whatsapp_sandbox::wait_for_replies(
        &sandbox.url,
        CUSTOMER,
        since,
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    assert!(nothing.is_empty(), "old replies are not new ones");
    sandbox.fault(json!({"code":130429})).await;
    let url = sandbox.url.clone();
    let waiter = tokio::spawn(async move {
        whatsapp_sandbox::wait_for_replies(&url, CUSTOMER, since, Duration::from_secs(5)).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    sandbox.send(&text("refused, not a reply")).await;
    sandbox.send(&text("You have 120 points.")).await;
    sandbox.send(&buttons()).await;
    let replies = waiter.await.unwrap().unwrap();
    let summaries: Vec<String> = replies.iter().map(|r| r.summary()).collect();
    assert_eq!(
        summaries,
        [
            "You have 120 points.",
            "Redeem 100 points for a free coffee? [Redeem | My balance]"
        ]
    );
}
