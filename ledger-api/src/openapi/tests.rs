//! The document against the code: every route the server registers is documented and
//! nothing else is; every error is a problem; credentials, limits and request fields agree
//! with the handlers and parsers; response schemas list exactly the keys the responses have.
//! (Serving the document, and the routes' behaviour, are tested in `crate::tests::openapi`.)

use super::*;
use crate::accounts::{
    InvitationAcceptedResponse, MeResponse, PrincipalKind, SessionResponse, SignupResponse,
};
use crate::api_keys::{ApiKeyList, ApiKeyView, CreatedApiKeyResponse};
use crate::customers::{CustomerList, CustomerView, LotView};
use crate::history::{History, HistoryEntry};
use crate::personal::{CustomerExport, DataKeyView, ExportedEvent, ExportedPersonalData};
use crate::render::{
    EnrolmentResponse, ErasureResponse, FulfilmentResponse, OpenedLot, PurchaseResponse,
    RedemptionResponse, RuleShare,
};
use crate::rewards::{RewardList, RewardView};
use crate::users::{InvitationView, InvitedUserResponse, UserList, UserView};
use crate::{route_table, Access};
use chrono::TimeZone;
use ledger_core::{CustomerId, LotId, MinorUnits, Points, PurchaseId, RedemptionId, RewardId};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The methods an OpenAPI path item may hold.
const OPERATION_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).expect("the document serialises")
}

/// Every (method, path, operation) of the document, method in lower case.
fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in OPERATION_METHODS {
            if let Some(operation) = item.get(method) {
                found.push((method.to_owned(), path.clone(), operation.clone()));
            }
        }
    }
    found
}

fn operation(document: &Value, method: &str, path: &str) -> Value {
    document["paths"][path][method].clone()
}

/// A response, with a `$ref` to `#/components/responses/…` resolved.
fn resolved(document: &Value, response: &Value) -> Value {
    match response.get("$ref").and_then(Value::as_str) {
        None => response.clone(),
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/responses/")
                .unwrap_or_else(|| panic!("not a response reference: {reference}"));
            let target = document["components"]["responses"][name].clone();
            assert!(target.is_object(), "dangling reference {reference}");
            target
        }
    }
}

fn schema(document: &Value, name: &str) -> Value {
    let schema = document["components"]["schemas"][name].clone();
    assert!(schema.is_object(), "no schema {name}");
    schema
}

fn property_names(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|name| (*name).to_owned()).collect()
}

#[test]
fn the_document_is_openapi_3_1() {
    let document = document();
    let version = document["openapi"].as_str().expect("openapi");
    assert!(version.starts_with("3.1."), "{version}");
    assert!(document["info"]["title"].is_string());
}

/// The route test: the server registers its routes from `route_table()`, so comparing the
/// table with the document compares the server with the document, both ways.
#[test]
fn every_route_is_documented_and_every_documented_operation_is_a_route() {
    let table = route_table();
    let served: BTreeSet<(String, String)> = table
        .iter()
        .map(|spec| (spec.method.as_str().to_lowercase(), spec.path.to_owned()))
        .collect();
    assert_eq!(served.len(), table.len(), "a route is in the table twice");
    let documented: BTreeSet<(String, String)> = operations(&document())
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "served but not documented (annotate the handler with #[utoipa::path] and list it in \
         ApiDoc's paths): {undocumented:?}"
    );
    let not_served: Vec<_> = documented.difference(&served).collect();
    assert!(
        not_served.is_empty(),
        "documented but not served (add it to route_table): {not_served:?}"
    );
}

#[test]
fn every_error_response_is_a_problem() {
    let document = document();
    for (method, path, operation) in operations(&document) {
        let responses = operation["responses"].as_object().expect("responses");
        for (status, response) in responses {
            let code: u16 = status.parse().expect("numeric statuses only");
            if code < 400 {
                continue;
            }
            let response = resolved(&document, response);
            let content = response["content"].as_object().expect("error content");
            assert_eq!(
                content.keys().collect::<Vec<_>>(),
                vec!["application/problem+json"],
                "{method} {path} {status}"
            );
            assert_eq!(
                content["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/Problem",
                "{method} {path} {status}"
            );
        }
    }
}

/// Every operation can answer some 4xx, documented as a problem, except the probes that are
/// exempt from rate limits (`/health`, `/ready`): nothing a client sends makes them 4xx.
#[test]
fn every_rate_limited_operation_documents_a_4xx_problem_with_retry_after_on_429() {
    let document = document();
    for (method, path, operation) in operations(&document) {
        let responses = operation["responses"].as_object().expect("responses");
        let client_errors: Vec<&String> = responses
            .keys()
            .filter(|status| status.starts_with('4'))
            .collect();
        if crate::edge::UNLIMITED_PATHS.contains(&path.as_str()) {
            assert!(
                client_errors.is_empty(),
                "{method} {path}: {client_errors:?}"
            );
            continue;
        }
        assert!(
            responses.contains_key("429"),
            "{method} {path} is rate-limited: document 429"
        );
        let too_many = resolved(&document, &responses["429"]);
        assert!(
            too_many["headers"]["Retry-After"].is_object(),
            "{method} {path}"
        );
    }
}

/// The public operations that answer 401 for credentials sent in the body (a password or a
/// refresh token), with their own problem types and no `WWW-Authenticate` challenge.
const BODY_CREDENTIAL_OPERATIONS: [(&str, &str); 3] = [
    ("post", "/v1/auth/login"),
    ("post", "/v1/auth/refresh"),
    ("post", "/v1/auth/logout"),
];

/// Vendor routes take a `Caller` (an API key or a user's access token): their operations
/// name both bearer schemes as alternatives and document 401 and a 503 with `Retry-After`.
/// Public routes name no scheme and never answer 401 `unauthenticated` (no bearer
/// challenge); only login, refresh and logout answer 401, for the credentials in their body.
#[test]
fn operations_declare_the_credentials_their_routes_require() {
    let document = document();
    let schemes = document["components"]["securitySchemes"].clone();
    assert_eq!(schemes[API_KEY_SCHEME]["scheme"], "bearer");
    assert_eq!(schemes[API_KEY_SCHEME]["bearerFormat"], "ll_<64 hex>");
    assert_eq!(schemes[USER_TOKEN_SCHEME]["scheme"], "bearer");
    assert_eq!(schemes[USER_TOKEN_SCHEME]["bearerFormat"], "JWT");
    for spec in route_table() {
        let method = spec.method.as_str().to_lowercase();
        let operation = operation(&document, &method, spec.path);
        let responses = &operation["responses"];
        match spec.access {
            Access::Vendor => {
                assert_eq!(
                    operation["security"],
                    json!([{API_KEY_SCHEME: []}, {USER_TOKEN_SCHEME: []}]),
                    "{method} {}",
                    spec.path
                );
                assert!(responses["401"].is_object(), "{method} {}", spec.path);
                let unavailable = resolved(&document, &responses["503"]);
                assert!(
                    unavailable["headers"]["Retry-After"].is_object(),
                    "{method} {}",
                    spec.path
                );
            }
            Access::Public => {
                assert!(
                    operation.get("security").is_none(),
                    "{method} {}",
                    spec.path
                );
                let body_credentials =
                    BODY_CREDENTIAL_OPERATIONS.contains(&(method.as_str(), spec.path));
                match responses.get("401") {
                    None => assert!(!body_credentials, "{method} {}: document 401", spec.path),
                    Some(unauthorized) => {
                        assert!(body_credentials, "{method} {}", spec.path);
                        assert!(
                            unauthorized.get("$ref").is_none()
                                && unauthorized["headers"].get("WWW-Authenticate").is_none(),
                            "{method} {}: not the bearer challenge",
                            spec.path
                        );
                    }
                }
            }
        }
    }
    assert!(
        document.get("security").is_none(),
        "no document-wide requirement: public routes have none"
    );
}

/// Which operations take an `Idempotency-Key`, and whether they require it, as the
/// handlers call `IdempotencyKey::required` or `::optional` (their behaviour is checked in
/// `crate::tests::openapi`).
#[test]
fn the_idempotency_key_is_documented_where_handlers_read_it() {
    let expected = [
        ("post", "/v1/purchases", true),
        ("post", "/v1/customers/{customer_id}/redemptions", true),
        ("post", "/v1/redemptions/{code}/fulfil", true),
        ("post", "/v1/rewards", false),
        ("post", "/v1/rewards/{reward_id}/retire", false),
        ("put", "/v1/rewards/{reward_id}", false),
        ("post", "/v1/customers", false),
        ("put", "/v1/customers/{customer_id}/birthday", false),
        ("post", "/v1/customers/{customer_id}/erasure", false),
        ("post", "/v1/customers/{customer_id}/refunds", true),
        ("post", "/v1/customers/{customer_id}/adjustments", true),
        ("post", "/v1/redemptions/{code}/cancel", true),
        ("put", "/v1/programme/settings", false),
        ("put", "/v1/tiers", false),
        ("put", "/v1/rules", false),
        ("post", "/v1/broadcasts", true),
    ];
    let document = document();
    for (method, path, operation) in operations(&document) {
        let header = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["in"] == "header" && p["name"] == "Idempotency-Key");
        let wanted = expected
            .iter()
            .find(|(m, p, _)| *m == method && *p == path)
            .map(|(_, _, required)| *required);
        match (wanted, header) {
            (None, None) => {}
            (Some(required), Some(header)) => {
                assert_eq!(header["required"], required, "{method} {path}");
                let schema = &header["schema"];
                assert_eq!(schema["minLength"], 1);
                assert_eq!(schema["maxLength"], crate::idempotency::KEY_BYTES_MAX);
            }
            (wanted, header) => panic!("{method} {path}: expected {wanted:?}, found {header:?}"),
        }
    }
}

/// The schema-only request bodies accept exactly the fields the parsers accept (the same
/// `pub const` lists the parsers pass to `deny_unknown`), and nothing else.
#[test]
fn request_schemas_have_exactly_the_parsers_fields() {
    let document = document();
    let cases: [(&str, &[&str]); 25] = [
        ("RefundRequestSchema", &crate::programme::REFUND_FIELDS[..]),
        (
            "BirthdayRequestSchema",
            &crate::customers::BIRTHDAY_FIELDS[..],
        ),
        (
            "AdjustmentRequestSchema",
            &crate::programme::ADJUSTMENT_FIELDS[..],
        ),
        ("SettingsView", &crate::programme::SETTINGS_FIELDS[..]),
        ("TierSchemeView", &crate::programme::TIER_SCHEME_FIELDS[..]),
        ("TierView", &crate::programme::TIER_FIELDS[..]),
        (
            "PurchaseRequestSchema",
            &crate::purchases::PURCHASE_FIELDS[..],
        ),
        ("LineItemSchema", &crate::purchases::LINE_ITEM_FIELDS[..]),
        (
            "PointsRedemptionSchema",
            &crate::redemptions::POINTS_REDEMPTION_FIELDS[..],
        ),
        (
            "RewardRedemptionSchema",
            &crate::redemptions::REWARD_REDEMPTION_FIELDS[..],
        ),
        ("RewardRequestSchema", &crate::rewards::REWARD_FIELDS[..]),
        (
            "EnrolmentRequestSchema",
            &crate::customers::ENROLMENT_FIELDS[..],
        ),
        ("CustomerSearchSchema", &crate::customers::SEARCH_FIELDS[..]),
        ("SignupRequestSchema", &crate::accounts::SIGNUP_FIELDS[..]),
        ("LoginRequestSchema", &crate::accounts::LOGIN_FIELDS[..]),
        (
            "RefreshTokenRequestSchema",
            &crate::accounts::REFRESH_TOKEN_FIELDS[..],
        ),
        (
            "InvitationAcceptanceSchema",
            &crate::accounts::INVITATION_ACCEPTANCE_FIELDS[..],
        ),
        ("NewUserRequestSchema", &crate::users::NEW_USER_FIELDS[..]),
        (
            "NewApiKeyRequestSchema",
            &crate::api_keys::NEW_API_KEY_FIELDS[..],
        ),
        (
            "WhatsAppNumberRequestSchema",
            &crate::whatsapp::NUMBER_FIELDS[..],
        ),
        ("RuleSetRequestSchema", &crate::rules::RULE_SET_FIELDS[..]),
        ("DryRunRequestSchema", &crate::dry_run::DRY_RUN_FIELDS[..]),
        (
            "BroadcastRequestSchema",
            &crate::broadcasts::BROADCAST_FIELDS[..],
        ),
        (
            "BroadcastSegmentSchema",
            &crate::broadcasts::SEGMENT_FIELDS[..],
        ),
        (
            "BroadcastTemplateSchema",
            &crate::broadcasts::TEMPLATE_FIELDS[..],
        ),
    ];
    for (name, fields) in cases {
        let schema = schema(&document, name);
        assert_eq!(property_names(&schema), names(fields), "{name}");
        assert_eq!(schema["additionalProperties"], false, "{name}");
    }
    let required = |name: &str| -> BTreeSet<String> {
        schema(&document, name)["required"]
            .as_array()
            .expect("required")
            .iter()
            .map(|v| v.as_str().expect("a name").to_owned())
            .collect()
    };
    assert_eq!(
        required("PurchaseRequestSchema"),
        names(&["customer_id", "amount_minor"])
    );
    assert_eq!(
        required("LineItemSchema"),
        names(&["sku", "quantity", "unit_price_minor"])
    );
    assert_eq!(
        required("PointsRedemptionSchema"),
        names(&crate::redemptions::POINTS_REDEMPTION_FIELDS)
    );
    assert_eq!(
        required("RewardRedemptionSchema"),
        names(&crate::redemptions::REWARD_REDEMPTION_FIELDS)
    );
    assert_eq!(
        required("RewardRequestSchema"),
        names(&crate::rewards::REWARD_REQUIRED_FIELDS)
    );
    // The redemption body is exactly one of the two forms, which together are the parser's
    // field list.
    let either = schema(&document, "RedemptionRequestSchema");
    let forms = either["oneOf"].as_array().expect("oneOf");
    assert_eq!(forms.len(), 2);
    let mut all = crate::redemptions::POINTS_REDEMPTION_FIELDS.to_vec();
    all.extend(crate::redemptions::REWARD_REDEMPTION_FIELDS);
    assert_eq!(names(&all), names(&crate::redemptions::REDEMPTION_FIELDS));
    assert_eq!(required("EnrolmentRequestSchema"), names(&["phone"]));
    assert_eq!(required("CustomerSearchSchema"), names(&["phone"]));
    assert_eq!(
        required("SignupRequestSchema"),
        names(&[
            "vendor_code",
            "business_name",
            "owner_email",
            "owner_password"
        ])
    );
    assert_eq!(
        required("LoginRequestSchema"),
        names(&crate::accounts::LOGIN_FIELDS)
    );
    assert_eq!(
        required("RefreshTokenRequestSchema"),
        names(&crate::accounts::REFRESH_TOKEN_FIELDS)
    );
    assert_eq!(
        required("InvitationAcceptanceSchema"),
        names(&crate::accounts::INVITATION_ACCEPTANCE_FIELDS)
    );
    assert_eq!(required("NewUserRequestSchema"), names(&["email", "role"]));
    assert_eq!(
        required("NewApiKeyRequestSchema"),
        names(&crate::api_keys::NEW_API_KEY_FIELDS)
    );
    assert_eq!(
        required("WhatsAppNumberRequestSchema"),
        names(&["phone_number_id", "display_phone_number", "access_token"])
    );
}

/// The role enums list exactly the roles the parsers accept: every role for users, every
/// role an API key may hold for keys.
#[test]
fn role_schemas_list_the_roles_the_parsers_accept() {
    use schema::accounts::Role;
    let document = document();
    let listed = |name: &str| -> BTreeSet<String> {
        schema(&document, name)["enum"]
            .as_array()
            .expect("enum")
            .iter()
            .map(|v| v.as_str().expect("a role").to_owned())
            .collect()
    };
    let users: BTreeSet<String> = Role::ALL.iter().map(|r| r.as_str().to_owned()).collect();
    let keys: BTreeSet<String> = Role::ALL
        .iter()
        .filter(|r| r.may_hold_api_key())
        .map(|r| r.as_str().to_owned())
        .collect();
    assert_eq!(listed("UserRole"), users);
    assert_eq!(listed("ApiKeyRole"), keys);
    for role in &users {
        assert!(Role::parse(role).is_ok(), "{role}");
    }
    let kinds: BTreeSet<String> = [PrincipalKind::User, PrincipalKind::ApiKey]
        .iter()
        .map(|kind| {
            serde_json::to_value(kind)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(listed("PrincipalKind"), kinds);
}

/// The token patterns of the schemas are the shapes the server issues and accepts.
#[test]
fn token_patterns_are_the_shapes_of_issued_tokens() {
    use schema::accounts::{
        generate_token, is_well_formed_token, INVITATION_TOKEN_PREFIX, REFRESH_TOKEN_PREFIX,
    };
    let document = document();
    let pattern = |schema_name: &str, property: &str| {
        schema(&document, schema_name)["properties"][property]["pattern"]
            .as_str()
            .unwrap_or_else(|| panic!("{schema_name}.{property}: no pattern"))
            .to_owned()
    };
    let refresh = format!("^{REFRESH_TOKEN_PREFIX}[0-9a-f]{{64}}$");
    let invitation = format!("^{INVITATION_TOKEN_PREFIX}[0-9a-f]{{64}}$");
    for (schema_name, property) in [
        ("RefreshTokenRequestSchema", "refresh_token"),
        ("SessionResponse", "refresh_token"),
        ("SignupResponse", "refresh_token"),
        ("InvitationAcceptedResponse", "refresh_token"),
    ] {
        assert_eq!(pattern(schema_name, property), refresh, "{schema_name}");
    }
    assert_eq!(pattern("InvitationAcceptanceSchema", "token"), invitation);
    assert_eq!(pattern("InvitationView", "token"), invitation);
    for prefix in [REFRESH_TOKEN_PREFIX, INVITATION_TOKEN_PREFIX] {
        let token = generate_token(prefix).unwrap().plaintext;
        let hex = token.strip_prefix(prefix).expect("the prefix");
        assert_eq!(hex.len(), 64);
        assert!(hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        assert!(is_well_formed_token(&token, prefix));
    }
    let key = format!("^{}[0-9a-f]{{64}}$", schema::api_keys::PREFIX);
    assert_eq!(pattern("CreatedApiKeyResponse", "api_key"), key);
    // Secrets are marked as such, so that tools mask them.
    for (schema_name, property) in [
        ("SignupRequestSchema", "owner_password"),
        ("LoginRequestSchema", "password"),
        ("RefreshTokenRequestSchema", "refresh_token"),
        ("InvitationAcceptanceSchema", "token"),
        ("InvitationAcceptanceSchema", "password"),
        ("SessionResponse", "access_token"),
        ("SessionResponse", "refresh_token"),
        ("SignupResponse", "access_token"),
        ("InvitationAcceptedResponse", "access_token"),
        ("InvitationView", "token"),
        ("CreatedApiKeyResponse", "api_key"),
        ("WhatsAppNumberRequestSchema", "access_token"),
    ] {
        assert_eq!(
            schema(&document, schema_name)["properties"][property]["format"],
            "password",
            "{schema_name}.{property}"
        );
    }
}

/// The limits in the request schemas (literals, as the attributes need) are the parsers'.
#[test]
fn request_schema_limits_are_the_parsers_limits() {
    let document = document();
    let purchase = schema(&document, "PurchaseRequestSchema");
    let line_item = schema(&document, "LineItemSchema");
    let redemption = schema(&document, "PointsRedemptionSchema");
    let reward = schema(&document, "RewardRequestSchema");
    let enrolment = schema(&document, "EnrolmentRequestSchema");
    let signup = schema(&document, "SignupRequestSchema");
    let login = schema(&document, "LoginRequestSchema");
    let acceptance = schema(&document, "InvitationAcceptanceSchema");
    let new_user = schema(&document, "NewUserRequestSchema");
    let new_key = schema(&document, "NewApiKeyRequestSchema");
    let number = schema(&document, "WhatsAppNumberRequestSchema");
    let email_max = schema::accounts::EMAIL_CHARS_MAX as i64;
    let password_min = crate::passwords::PASSWORD_CHARS_MIN as i64;
    let password_max = crate::passwords::PASSWORD_CHARS_MAX as i64;
    let cases: Vec<(&str, &Value, i64)> = vec![
        (
            "amount_minor.minimum",
            &purchase["properties"]["amount_minor"]["minimum"],
            1,
        ),
        (
            "amount_minor.maximum",
            &purchase["properties"]["amount_minor"]["maximum"],
            MinorUnits::AMOUNT_MAX,
        ),
        (
            "line_items.maxItems",
            &purchase["properties"]["line_items"]["maxItems"],
            crate::purchases::LINE_ITEMS_MAX as i64,
        ),
        (
            "reference.maxLength",
            &purchase["properties"]["reference"]["maxLength"],
            crate::purchases::REFERENCE_CHARS_MAX as i64,
        ),
        (
            "sku.maxLength",
            &line_item["properties"]["sku"]["maxLength"],
            crate::purchases::SKU_CHARS_MAX as i64,
        ),
        (
            "quantity.maximum",
            &line_item["properties"]["quantity"]["maximum"],
            i64::from(u32::MAX),
        ),
        (
            "unit_price_minor.maximum",
            &line_item["properties"]["unit_price_minor"]["maximum"],
            MinorUnits::AMOUNT_MAX,
        ),
        (
            "points.maximum",
            &redemption["properties"]["points"]["maximum"],
            Points::COMMAND_MAX,
        ),
        (
            "description.maxLength",
            &redemption["properties"]["description"]["maxLength"],
            crate::redemptions::DESCRIPTION_CHARS_MAX as i64,
        ),
        (
            "reward name.maxLength",
            &reward["properties"]["name"]["maxLength"],
            crate::rewards::NAME_CHARS_MAX as i64,
        ),
        (
            "points_cost.maximum",
            &reward["properties"]["points_cost"]["maximum"],
            Points::COMMAND_MAX,
        ),
        (
            "reward description.maxLength",
            &reward["properties"]["description"]["maxLength"],
            ledger_core::command::REWARD_DESCRIPTION_CHARS_MAX as i64,
        ),
        (
            "image_url.maxLength",
            &reward["properties"]["image_url"]["maxLength"],
            ledger_core::command::REWARD_IMAGE_URL_CHARS_MAX as i64,
        ),
        (
            "stock.maximum",
            &reward["properties"]["stock"]["maximum"],
            i64::from(ledger_core::command::REWARD_STOCK_MAX),
        ),
        (
            "per_customer_limit.maximum",
            &reward["properties"]["per_customer_limit"]["maximum"],
            i64::from(ledger_core::command::REWARD_PER_CUSTOMER_LIMIT_MAX),
        ),
        (
            "name.maxLength",
            &enrolment["properties"]["name"]["maxLength"],
            crate::customers::NAME_CHARS_MAX as i64,
        ),
        (
            "business_name.maxLength",
            &signup["properties"]["business_name"]["maxLength"],
            crate::accounts::BUSINESS_NAME_CHARS_MAX as i64,
        ),
        (
            "owner_email.maxLength",
            &signup["properties"]["owner_email"]["maxLength"],
            email_max,
        ),
        (
            "owner_password.minLength",
            &signup["properties"]["owner_password"]["minLength"],
            password_min,
        ),
        (
            "owner_password.maxLength",
            &signup["properties"]["owner_password"]["maxLength"],
            password_max,
        ),
        (
            "expiry_days.maximum",
            &signup["properties"]["expiry_days"]["maximum"],
            crate::accounts::EXPIRY_DAYS_MAX,
        ),
        (
            "login email.maxLength",
            &login["properties"]["email"]["maxLength"],
            email_max,
        ),
        (
            "login password.maxLength",
            &login["properties"]["password"]["maxLength"],
            password_max,
        ),
        (
            "invitation password.minLength",
            &acceptance["properties"]["password"]["minLength"],
            password_min,
        ),
        (
            "invitation password.maxLength",
            &acceptance["properties"]["password"]["maxLength"],
            password_max,
        ),
        (
            "new user email.maxLength",
            &new_user["properties"]["email"]["maxLength"],
            email_max,
        ),
        (
            "display_name.maxLength",
            &new_user["properties"]["display_name"]["maxLength"],
            crate::users::DISPLAY_NAME_CHARS_MAX as i64,
        ),
        (
            "label.maxLength",
            &new_key["properties"]["label"]["maxLength"],
            crate::api_keys::LABEL_CHARS_MAX as i64,
        ),
        (
            "phone_number_id.minLength",
            &number["properties"]["phone_number_id"]["minLength"],
            crate::whatsapp::PHONE_NUMBER_ID_DIGITS_MIN as i64,
        ),
        (
            "phone_number_id.maxLength",
            &number["properties"]["phone_number_id"]["maxLength"],
            crate::whatsapp::PHONE_NUMBER_ID_DIGITS_MAX as i64,
        ),
        (
            "access_token.maxLength",
            &number["properties"]["access_token"]["maxLength"],
            crate::whatsapp::ACCESS_TOKEN_CHARS_MAX as i64,
        ),
        (
            "fallback_template.maxLength",
            &number["properties"]["fallback_template"]["maxLength"],
            crate::whatsapp::TEMPLATE_NAME_CHARS_MAX as i64,
        ),
    ];
    for (what, documented, limit) in cases {
        assert_eq!(documented.as_i64(), Some(limit), "{what}");
    }
    // The vendor code's and the currency's limits live in their parsers, not in constants:
    // the documented bounds are checked against the parsers at the edges.
    let vendor_code = &signup["properties"]["vendor_code"];
    let min = vendor_code["minLength"].as_u64().expect("minLength") as usize;
    let max = vendor_code["maxLength"].as_u64().expect("maxLength") as usize;
    assert_eq!(
        vendor_code["pattern"],
        format!("^[A-Za-z0-9]{{{min},{max}}}$")
    );
    let code = |n: usize| schema::accounts::VendorCode::parse(&"a1".repeat(n)[..n]);
    assert!(code(min).is_ok() && code(max).is_ok());
    assert!(code(min - 1).is_err() && code(max + 1).is_err());
    assert_eq!(signup["properties"]["currency"]["pattern"], "^[A-Z]{3}$");
    assert!(ledger_core::Currency::parse("NGN").is_ok());
    for bad in ["NG", "NGNN", "ngn", "N1N"] {
        assert!(ledger_core::Currency::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(
        signup["properties"]["expiry_days"]["minimum"].as_i64(),
        Some(1)
    );
    assert_eq!(
        new_key["properties"]["label"]["minLength"].as_i64(),
        Some(1)
    );
    let list = operation(&document, "get", "/v1/customers");
    let history = operation(&document, "get", "/v1/customers/{customer_id}/history");
    for (operation, max) in [
        (list, crate::customers::LIST_LIMIT_MAX),
        (history, crate::history::LIMIT_MAX),
    ] {
        let limit = operation["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == "limit")
            .expect("a limit parameter")
            .clone();
        assert_eq!(limit["schema"]["maximum"].as_i64(), Some(max));
    }
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// A schema's properties are exactly the keys the type serialises to, and every key is
/// required (these bodies always carry every key, `null` included).
fn assert_schema_matches<T: serde::Serialize>(document: &Value, name: &str, sample: &T) {
    let value = serde_json::to_value(sample).expect("serialises");
    let keys: BTreeSet<String> = value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    let schema = schema(document, name);
    assert_eq!(property_names(&schema), keys, "{name}: properties");
    let required: BTreeSet<String> = schema["required"]
        .as_array()
        .expect("required")
        .iter()
        .map(|v| v.as_str().expect("a name").to_owned())
        .collect();
    assert_eq!(required, keys, "{name}: required");
}

#[test]
fn response_schemas_have_exactly_the_keys_the_responses_serialise() {
    let document = document();
    let customer_id = CustomerId::from_uuid(id(1));
    let lot = OpenedLot {
        lot_id: LotId::from_uuid(id(2)),
        points: 25,
        expires_at: at(),
    };
    let rule = RuleShare {
        rule_id: "base".into(),
        kind: "per_amount_spent",
        rule: "per_amount_spent",
        points: 25,
    };
    assert_schema_matches(&document, "OpenedLot", &lot);
    let broadcast = crate::broadcasts::BroadcastResponse {
        broadcast_id: id(7),
        name: "Spring offer".into(),
        state: "running".into(),
        segment: json!({"kind": "all_opted_in"}),
        template: json!({"name": "spring_offer", "language": "en", "parameters": []}),
        created_by: ledger_core::events::Actor::User(id(8)),
        created_at: at(),
        updated_at: at(),
        completed_at: None,
        progress: crate::broadcasts::ProgressView {
            recipients: 3,
            skipped_opted_out: 1,
            skipped_no_whatsapp: 0,
            waiting: 0,
            enqueued: 2,
            sending: 0,
            sent: 2,
            delivered: 1,
            read: 0,
            failed: 0,
            withdrawn: 0,
        },
    };
    assert_schema_matches(&document, "ProgressView", &broadcast.progress);
    assert_schema_matches(&document, "BroadcastResponse", &broadcast);
    let recipient = crate::broadcasts::RecipientResponse {
        customer_id: id(9),
        state: "enqueued".into(),
        message_state: None,
        updated_at: at(),
    };
    assert_schema_matches(&document, "RecipientResponse", &recipient);
    assert_schema_matches(
        &document,
        "RecipientList",
        &crate::broadcasts::RecipientList {
            recipients: vec![recipient],
            next_after: None,
        },
    );
    assert_schema_matches(
        &document,
        "WhatsAppNumberView",
        &crate::whatsapp::WhatsAppNumberView {
            phone_number_id: "106540352242922".into(),
            display_phone_number: "2348012345678".into(),
            fallback_template: "loyalty_update".into(),
            template_language: "en".into(),
            access_token_set: true,
            created_at: at(),
            updated_at: at(),
        },
    );
    assert_schema_matches(
        &document,
        "DetachedNumberResponse",
        &crate::whatsapp::DetachedNumberResponse {
            phone_number_id: "106540352242922".into(),
            queued_messages_failed: 0,
        },
    );
    assert_schema_matches(&document, "RuleShare", &rule);
    assert_schema_matches(
        &document,
        "PurchaseResponse",
        &PurchaseResponse {
            purchase_id: PurchaseId::from_uuid(id(3)),
            customer_id,
            amount_minor: 250_000,
            points_earned: 25,
            balance: 25,
            rule_set_version: 1,
            breakdown: vec![rule],
            lot: None,
        },
    );
    assert_schema_matches(
        &document,
        "RedemptionResponse",
        &RedemptionResponse {
            redemption_id: RedemptionId::from_uuid(id(4)),
            customer_id,
            points: 10,
            balance: 15,
            available: 15,
            held: 0,
            hold_expires_at: None,
            reward_id: None,
            code: None,
        },
    );
    assert_schema_matches(
        &document,
        "FulfilmentResponse",
        &FulfilmentResponse {
            redemption_id: RedemptionId::from_uuid(id(4)),
            customer_id,
            reward_id: RewardId::from_uuid(id(7)),
            fulfilled_at: at(),
        },
    );
    let bare = RewardView {
        reward_id: RewardId::from_uuid(id(7)),
        name: "Jollof rice".into(),
        points_cost: 50,
        description: None,
        image_url: None,
        valid_from: None,
        valid_until: None,
        stock: None,
        stock_remaining: None,
        per_customer_limit: None,
        active: true,
        created_at: at(),
        updated_at: None,
        retired_at: None,
    };
    assert_schema_matches(&document, "RewardView", &bare);
    let reward = RewardView {
        description: Some("Party jollof with chicken".into()),
        image_url: Some("https://cdn.example.com/jollof.jpg".into()),
        valid_from: Some(at()),
        valid_until: Some(at()),
        stock: Some(10),
        stock_remaining: Some(3),
        per_customer_limit: Some(2),
        updated_at: Some(at()),
        ..bare
    };
    assert_schema_matches(&document, "RewardView", &reward);
    assert_schema_matches(
        &document,
        "RewardList",
        &RewardList {
            rewards: vec![reward],
        },
    );
    assert_schema_matches(
        &document,
        "EnrolmentResponse",
        &EnrolmentResponse {
            customer_id,
            enrolled_at: at(),
            referral_code: Some("04HMASW9".into()),
            referred_by: Some(customer_id),
        },
    );
    assert_schema_matches(
        &document,
        "BirthdayResponse",
        &crate::render::BirthdayResponse {
            customer_id,
            birthday: Some("02-29".into()),
            set_at: at(),
        },
    );
    assert_schema_matches(
        &document,
        "ErasureResponse",
        &ErasureResponse {
            customer_id,
            erased_at: at(),
        },
    );
    let lot_view = LotView {
        lot_id: LotId::from_uuid(id(2)),
        points: 25,
        remaining: 20,
        reserved: 0,
        pending_until: None,
        earned_at: at(),
        expires_at: at(),
        point_value_minor: Some(40),
    };
    assert_schema_matches(&document, "LotView", &lot_view);
    let view = CustomerView {
        customer_id,
        phone: None,
        name: None,
        erased_at: None,
        balance: 20,
        pending: 0,
        held: 0,
        available: 20,
        debt: 0,
        earned: 25,
        redeemed: 5,
        expired: 0,
        reversed: 0,
        adjusted: 0,
        purchases: 1,
        tier: None,
        tier_review_at: None,
        birthday: Some("03-31".into()),
        referral_code: Some("04HMASW9".into()),
        enrolled_at: at(),
        outstanding: crate::books::WorthView {
            points: 20,
            value_minor: 800,
            unvalued_points: 0,
        },
        lots: vec![lot_view],
    };
    assert_schema_matches(&document, "CustomerView", &view);
    books_schemas_match(&document, &view);
    assert_schema_matches(
        &document,
        "CustomerList",
        &CustomerList {
            customers: vec![view],
            next_after: None,
        },
    );
    let entry = HistoryEntry {
        sequence: 7,
        version: 2,
        event_type: "PointsEarned".into(),
        points: 25,
        reason: "Earned".into(),
        actor: "system:cli".into(),
        recorded_at: at(),
    };
    assert_schema_matches(&document, "HistoryEntry", &entry);
    assert_schema_matches(
        &document,
        "History",
        &History {
            customer_id,
            entries: vec![entry],
        },
    );
    let event = ExportedEvent {
        sequence: 7,
        version: 2,
        event_type: "PointsEarned".into(),
        points: 25,
        reason: "Earned".into(),
        recorded_at: at(),
        actor: ledger_core::events::Actor::ApiKey(id(5)),
        correlation_id: id(6),
    };
    assert_schema_matches(&document, "ExportedEvent", &event);
    let data_key = DataKeyView {
        master_key_id: "k1".into(),
        created_at: at(),
    };
    assert_schema_matches(&document, "DataKeyView", &data_key);
    let personal = ExportedPersonalData {
        phone: "+2348012345678".into(),
        name: None,
    };
    assert_schema_matches(&document, "ExportedPersonalData", &personal);
    assert_schema_matches(
        &document,
        "CustomerExport",
        &CustomerExport {
            customer_id,
            exported_at: at(),
            personal_data: Some(personal),
            erased_at: None,
            data_key: Some(data_key),
            enrolled_at: at(),
            balance: 20,
            earned: 25,
            redeemed: 5,
            expired: 0,
            purchases: 1,
            birthday: Some("02-29".into()),
            referral_code: Some("04HMASW9".into()),
            referred_by: Some(customer_id),
            events: vec![event],
        },
    );
}

#[test]
fn accounts_response_schemas_have_exactly_the_keys_the_responses_serialise() {
    let document = document();
    let tenant_id = ledger_core::TenantId::from_uuid(id(1));
    let refresh_token = format!("lr_{}", "0".repeat(64));
    assert_schema_matches(
        &document,
        "SessionResponse",
        &SessionResponse {
            access_token: "a.b.c".into(),
            token_type: crate::accounts::TOKEN_TYPE,
            expires_in: crate::jwt::ACCESS_TOKEN_SECONDS,
            refresh_token: refresh_token.clone(),
        },
    );
    assert_schema_matches(
        &document,
        "SignupResponse",
        &SignupResponse {
            tenant_id,
            vendor_code: "SHOP1".into(),
            user_id: id(2),
            role: "owner",
            access_token: "a.b.c".into(),
            token_type: crate::accounts::TOKEN_TYPE,
            expires_in: crate::jwt::ACCESS_TOKEN_SECONDS,
            refresh_token: refresh_token.clone(),
        },
    );
    assert_schema_matches(
        &document,
        "InvitationAcceptedResponse",
        &InvitationAcceptedResponse {
            user_id: id(2),
            tenant_id,
            role: "staff",
            access_token: "a.b.c".into(),
            token_type: crate::accounts::TOKEN_TYPE,
            expires_in: crate::jwt::ACCESS_TOKEN_SECONDS,
            refresh_token,
        },
    );
    assert_schema_matches(
        &document,
        "MeResponse",
        &MeResponse {
            kind: PrincipalKind::ApiKey,
            id: id(3),
            tenant_id,
            role: "staff",
        },
    );
    let invitation = InvitationView {
        invitation_id: id(4),
        token: format!("li_{}", "0".repeat(64)),
        expires_at: at(),
    };
    assert_schema_matches(&document, "InvitationView", &invitation);
    assert_schema_matches(
        &document,
        "InvitedUserResponse",
        &InvitedUserResponse {
            user_id: id(5),
            email: "staff@shop.ng".into(),
            role: "staff",
            display_name: String::new(),
            invitation,
        },
    );
    let user = UserView {
        user_id: id(5),
        email: "staff@shop.ng".into(),
        display_name: "Ada".into(),
        role: "staff",
        created_at: at(),
        created_by: None,
        disabled_at: None,
        invitation_pending: true,
    };
    assert_schema_matches(&document, "UserView", &user);
    assert_schema_matches(&document, "UserList", &UserList { users: vec![user] });
    assert_schema_matches(
        &document,
        "CreatedApiKeyResponse",
        &CreatedApiKeyResponse {
            api_key_id: id(6),
            label: "till 1".into(),
            role: "auditor",
            api_key: format!("ll_{}", "0".repeat(64)),
        },
    );
    let key = ApiKeyView {
        api_key_id: id(6),
        label: "till 1".into(),
        role: "auditor",
        created_at: at(),
        created_by: Some(id(5)),
        last_used_at: None,
        revoked_at: None,
    };
    assert_schema_matches(&document, "ApiKeyView", &key);
    assert_schema_matches(
        &document,
        "ApiKeyList",
        &ApiKeyList {
            api_keys: vec![key],
        },
    );
}

/// Each variant of the ledger's `Actor` serialises to the one-member object the `Actor`
/// schema documents.
#[test]
fn the_actor_schema_names_every_actor() {
    let document = document();
    let documented: BTreeSet<String> = schema(&document, "Actor")["oneOf"]
        .as_array()
        .expect("oneOf")
        .iter()
        .flat_map(property_names)
        .collect();
    use ledger_core::events::Actor as A;
    let serialised: BTreeSet<String> = [
        A::ApiKey(id(1)),
        A::User(id(1)),
        A::Customer(CustomerId::from_uuid(id(1))),
        A::System("expiry".into()),
    ]
    .iter()
    .map(|actor| {
        let value = serde_json::to_value(actor).expect("serialises");
        let object = value.as_object().expect("an object").clone();
        assert_eq!(object.len(), 1, "{value}");
        object.keys().next().expect("a key").clone()
    })
    .collect();
    assert_eq!(documented, serialised);
}

/// The problem schema names the standard members as required and every extension member
/// the API sends, and allows others.
#[test]
fn the_problem_schema_covers_what_problems_carry() {
    let document = document();
    let problem = schema(&document, "Problem");
    assert_eq!(
        problem["required"],
        json!(["type", "title", "status", "detail"])
    );
    assert_eq!(problem["additionalProperties"], true);
    let documented = property_names(&problem);
    let mut samples = vec![
        serde_json::to_value(
            crate::problem::ApiError::PayloadTooLarge { limit_bytes: 1 }.problem(),
        )
        .unwrap(),
        serde_json::to_value(crate::problem::ApiError::invalid_field("x", "y").problem()).unwrap(),
        serde_json::to_value(
            crate::problem::ApiError::InvalidQuery {
                parameter: "limit".into(),
                detail: "d".into(),
            }
            .problem(),
        )
        .unwrap(),
        serde_json::to_value(crate::problem::ApiError::IdempotencyKeyMissing.problem()).unwrap(),
        serde_json::to_value(crate::problem::ApiError::InvalidRefreshToken.problem()).unwrap(),
        serde_json::to_value(crate::problem::ApiError::InvitationNotFound.problem()).unwrap(),
        serde_json::to_value(crate::problem::ApiError::VendorCodeTaken.problem()).unwrap(),
        serde_json::to_value(
            crate::problem::ApiError::EmailTaken {
                field: "owner_email",
            }
            .problem(),
        )
        .unwrap(),
        serde_json::to_value(
            crate::problem::ApiError::TooManyAttempts {
                retry_after_seconds: 30,
            }
            .problem(),
        )
        .unwrap(),
        serde_json::to_value(
            crate::problem::ApiError::RateLimited {
                retry_after: std::time::Duration::from_secs(1),
            }
            .problem(),
        )
        .unwrap(),
    ];
    for refusal in [
        ::schema::Refusal::PhoneAlreadyEnrolled(CustomerId::from_uuid(id(1))),
        ::schema::Refusal::Rejected(ledger_core::Rejection::InsufficientPoints {
            available: Points::new(1),
            requested: Points::new(2),
        }),
        ::schema::Refusal::Rejected(ledger_core::Rejection::LineItemsDoNotAddUp {
            line_items_total: MinorUnits::new(1),
            amount: MinorUnits::new(2),
        }),
    ] {
        samples.push(serde_json::to_value(crate::problem::refusal(&refusal)).unwrap());
    }
    for sample in samples {
        for key in sample.as_object().expect("an object").keys() {
            assert!(
                documented.contains(key),
                "undocumented member {key}: {sample}"
            );
        }
    }
}

#[test]
fn the_dry_run_is_documented_with_its_request_and_answer() {
    let document = document();
    let request = schema(&document, "DryRunRequestSchema");
    let required: BTreeSet<String> = request["required"]
        .as_array()
        .expect("required")
        .iter()
        .map(|v| v.as_str().expect("a name").to_owned())
        .collect();
    assert_eq!(required, names(&crate::dry_run::DRY_RUN_FIELDS));
    assert_eq!(
        request["properties"]["rules"]["maxItems"],
        ledger_core::RuleSet::RULES_MAX as i64
    );
    let answer = crate::dry_run::DryRunView {
        from: at(),
        to: at(),
        time_zone: "Africa/Lagos".into(),
        purchases_evaluated: 2,
        customers_evaluated: 2,
        customers_affected: 1,
        points_actual: 20,
        points_proposed: 30,
        points_difference: 10,
        points_by_rule: vec![crate::dry_run::RulePointsView {
            rule_id: "weekend".into(),
            kind: "promotion",
            points: 10,
        }],
        currency: "NGN".into(),
        point_value_minor: None,
        liability_difference_minor: None,
    };
    assert_schema_matches(&document, "DryRunView", &answer);
    assert_schema_matches(&document, "RulePointsView", &answer.points_by_rule[0]);
    let operation = operation(&document, "post", "/v1/rules/dry-run");
    for status in ["200", "403", "422"] {
        assert!(
            operation["responses"][status].is_object(),
            "POST /v1/rules/dry-run documents {status}"
        );
    }
}

fn books_schemas_match(document: &Value, customer: &CustomerView) {
    use crate::books::*;
    let worth = WorthView {
        points: 20,
        value_minor: 800,
        unvalued_points: 5,
    };
    let as_of = LedgerPoint {
        sequence: 42,
        recorded_at: Some(at()),
    };
    assert_schema_matches(
        document,
        "CustomerPositionView",
        &CustomerPositionView {
            as_of,
            customer: customer.clone(),
        },
    );
    let movements = MovementsView {
        issued: worth,
        redeemed: worth,
        expired: worth,
        reversed: worth,
        adjusted: worth,
    };
    assert_schema_matches(
        document,
        "TenantPositionView",
        &TenantPositionView {
            as_of: LedgerPoint {
                sequence: 0,
                recorded_at: None,
            },
            currency: "NGN".into(),
            point_value_minor: None,
            events: 3,
            customers: 1,
            balance: 20,
            pending: 0,
            held: 0,
            debt: 0,
            outstanding: worth,
            movements,
            tiers: vec![TierCount {
                tier: None,
                customers: 1,
            }],
        },
    );
    assert_schema_matches(
        document,
        "StatementsView",
        &StatementsView {
            currency: "NGN".into(),
            time_zone: "Africa/Lagos".into(),
            months: vec![MonthStatementView {
                month: "2026-03".into(),
                opening: worth,
                issued: worth,
                redeemed: worth,
                expired: worth,
                reversed: worth,
                adjusted: worth,
                closing: worth,
            }],
        },
    );
}
