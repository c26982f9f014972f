//! Vendor accounts: tenants' directory rows, users and their roles, invitations, rotating
//! refresh tokens, and the management of API keys.
//!
//! Reading order: [`Role`] and [`Permission`] (who may do what; used by the HTTP layer and
//! stored here as text), the parsed inputs ([`VendorCode`], [`Email`]), [`register_tenant`]
//! (tenant, owner and `TenantRegistered` in one transaction), then the user, token and key
//! queries. Every statement that touches a tenant's rows runs in a transaction scoped to that
//! tenant ([`crate::tenancy`]); the look-ups made before the tenant is known go through the
//! `tenancy.*_by_*` definer functions.
//!
//! Secrets: refresh tokens (`lr_`), invitation tokens (`li_`) and API keys (`ll_`) are 256-bit
//! random values shown once; only their SHA-256 is stored (see [`crate::api_keys`] for why a
//! fast hash is right for them). Password hashes (argon2id) are computed by the caller.

use chrono::{DateTime, Duration, Utc};
use ledger_core::events::EventMetadata;
use ledger_core::rules::RuleSet;
use ledger_core::{Command, Currency, CustomerState, LedgerState, StreamId, TenantId, TenantState};
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::db::is_unique_violation;
use crate::store::{self, ExpectedVersion, StoreError};

// ---------------------------------------------------------------------------------------
// Roles and permissions
// ---------------------------------------------------------------------------------------

/// What a user or an API key may do. Stored as text (`users.role`, `api_keys.role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, including users, API keys and customers' personal data.
    Owner,
    /// The till: enrol, log purchases, redeem, fulfil redemptions, read customers, their
    /// history and the reward catalogue.
    Staff,
    /// Read-only access to the ledger: customers, their history, the reward catalogue, and
    /// the audit export of the whole ledger.
    Auditor,
    /// Read-only access to the projections (customer balances) and the reward catalogue.
    Analyst,
}

/// One thing a request may need to be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    EnrolCustomer,
    LogPurchase,
    RedeemPoints,
    /// `GET /v1/customers/{id}`: balance and open lots (the balances projection).
    ReadCustomer,
    /// `GET /v1/customers/{id}/history`: the ledger's own entries.
    ReadHistory,
    ManageUsers,
    ManageApiKeys,
    /// Customers' phone numbers and names in the clear, and finding a customer by phone.
    /// Analysts and auditors see balances and the ledger without them.
    ReadPersonalData,
    /// Erasure and export of customers' personal data.
    ManagePersonalData,
    /// Create and retire catalogue rewards: what points are worth is the business's
    /// decision, so owners only (a leaked till key must not add a 1-point reward).
    ManageRewards,
    /// `GET /v1/rewards`: the catalogue, which holds no personal data.
    ReadRewards,
    /// Hand a redeemed reward over at the counter, by its code.
    FulfilRedemptions,
    /// Register, show and detach the tenant's own WhatsApp number and set its access token
    /// (`/v1/whatsapp/number`): the token sends in the business's name, so owners only.
    ManageWhatsApp,
    /// Read the programme's settings (time zone, return window, refund policy, hold
    /// window, point value).
    ReadProgramme,
    /// Change them: what points cost and when they can be spent, so owners only.
    ManageProgramme,
    /// Refund a logged purchase (its points go back in proportion): the till's job.
    RefundPurchases,
    /// Add or take points by hand, with a reason: owners only (a leaked till key must not
    /// mint points).
    AdjustPoints,
    /// Cancel a reward hold that has not been handed over (its points become available).
    CancelHolds,
    /// Publish a points rule set (`PUT /v1/rules`): what purchases earn is the business's
    /// decision, so owners only, like the catalogue.
    ManageRules,
    /// `GET /v1/rules`: the rule sets, which hold no personal data.
    ReadRules,
    /// `POST /v1/rules/dry-run`: what a proposed rule set would have earned over past
    /// purchases. Aggregates only (no customer, no personal data) and nothing is written,
    /// so owners and analysts, whose job is to weigh a promotion; not the till, whose key
    /// could otherwise drive long reads of the whole ledger.
    DryRunRules,
    /// Create, pause, resume and cancel broadcasts (`/v1/broadcasts`): the business's own
    /// marketing, sent by the people who run the shop (owners and staff).
    SendBroadcasts,
    /// `GET /v1/broadcasts`: broadcasts and their progress (counts, no personal data).
    ReadBroadcasts,
    /// `/v1/books/*`: the tenant's position (points outstanding and their worth, movements,
    /// tiers) as of any time or sequence, and monthly liability statements. Aggregates in
    /// money with no personal data: owners, auditors (the vendor's accountant) and analysts.
    ReadBooks,
    /// `GET /v1/analytics/*`: the tenant's aggregate figures (the `analytics` views: counts,
    /// points, amounts; no customer, no personal data), as JSON or CSV. Owners and analysts.
    ReadAnalytics,
    /// `GET /v1/audit/export`: the tenant's whole ledger with its signed chain head, for an
    /// offline audit (docs/AUDIT.md). Auditors and owners; not the till (a leaked till key
    /// must not drive long reads of the whole ledger), not analysts (their job is the read
    /// models, and the events carry more than balances).
    ExportLedger,
}

impl Permission {
    pub const ALL: [Permission; 26] = [
        Permission::EnrolCustomer,
        Permission::LogPurchase,
        Permission::RedeemPoints,
        Permission::ReadCustomer,
        Permission::ReadHistory,
        Permission::ManageUsers,
        Permission::ManageApiKeys,
        Permission::ReadPersonalData,
        Permission::ManagePersonalData,
        Permission::ManageRewards,
        Permission::ReadRewards,
        Permission::FulfilRedemptions,
        Permission::ManageWhatsApp,
        Permission::ReadProgramme,
        Permission::ManageProgramme,
        Permission::RefundPurchases,
        Permission::AdjustPoints,
        Permission::CancelHolds,
        Permission::ManageRules,
        Permission::ReadRules,
        Permission::DryRunRules,
        Permission::SendBroadcasts,
        Permission::ReadBroadcasts,
        Permission::ReadBooks,
        Permission::ReadAnalytics,
        Permission::ExportLedger,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of: owner, staff, auditor, analyst")]
pub struct InvalidRole;

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Staff, Role::Auditor, Role::Analyst];

    pub fn parse(raw: &str) -> Result<Role, InvalidRole> {
        match raw {
            "owner" => Ok(Role::Owner),
            "staff" => Ok(Role::Staff),
            "auditor" => Ok(Role::Auditor),
            "analyst" => Ok(Role::Analyst),
            _ => Err(InvalidRole),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Staff => "staff",
            Role::Auditor => "auditor",
            Role::Analyst => "analyst",
        }
    }

    /// The permission matrix: the one place that says which role may do what.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Owner => true,
            Role::Staff => matches!(
                permission,
                P::EnrolCustomer
                    | P::LogPurchase
                    | P::RedeemPoints
                    | P::ReadCustomer
                    | P::ReadHistory
                    | P::ReadPersonalData
                    | P::ReadRewards
                    | P::FulfilRedemptions
                    | P::ReadProgramme
                    | P::RefundPurchases
                    | P::CancelHolds
                    | P::ReadRules
                    | P::SendBroadcasts
                    | P::ReadBroadcasts
            ),
            Role::Auditor => matches!(
                permission,
                P::ReadCustomer
                    | P::ReadHistory
                    | P::ReadRewards
                    | P::ReadProgramme
                    | P::ReadRules
                    | P::ReadBooks
                    | P::ExportLedger
            ),
            Role::Analyst => matches!(
                permission,
                P::ReadCustomer
                    | P::ReadRewards
                    | P::ReadProgramme
                    | P::ReadRules
                    | P::DryRunRules
                    | P::ReadBooks
                    | P::ReadAnalytics
            ),
        }
    }

    /// API keys belong to systems, never to a person who answers for the tenant: a leaked
    /// key must not be able to manage users, keys or personal data.
    pub fn may_hold_api_key(self) -> bool {
        self != Role::Owner
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------
// Parsed inputs
// ---------------------------------------------------------------------------------------

/// A vendor's short public code (3 to 20 of A–Z and 0–9, kept upper-case so codes are
/// unique whatever their case): the domain's own type, so signup and the WhatsApp
/// conversation can never disagree on what a code is.
pub use ledger_core::conversation::{InvalidVendorCode, VendorCode};

/// A login email, trimmed and lower-cased. The check is deliberately modest (one `@`, a
/// dotted domain, no spaces or control characters): only delivery proves an address.
#[derive(Clone, PartialEq, Eq)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be an email address such as owner@example.com (at most 254 characters)")]
pub struct InvalidEmail;

/// Longest address SMTP can carry (RFC 5321 path limit less the brackets).
pub const EMAIL_CHARS_MAX: usize = 254;

impl Email {
    pub fn parse(raw: &str) -> Result<Email, InvalidEmail> {
        let email = raw.trim().to_lowercase();
        if email.len() < 3 || email.chars().count() > EMAIL_CHARS_MAX {
            return Err(InvalidEmail);
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidEmail);
        }
        let (local, domain) = email.split_once('@').ok_or(InvalidEmail)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@');
        if local.is_empty() || !domain_ok {
            return Err(InvalidEmail);
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Emails are personal data: kept out of debug output (and so out of logs).
impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}

// ---------------------------------------------------------------------------------------
// Opaque tokens
// ---------------------------------------------------------------------------------------

pub const REFRESH_TOKEN_PREFIX: &str = "lr_";
pub const INVITATION_TOKEN_PREFIX: &str = "li_";
const TOKEN_HEX_DIGITS: usize = 64;

/// How long a refresh token may be used (each use replaces it with a new one).
pub const REFRESH_TOKEN_LIFETIME: Duration = Duration::days(30);
/// How long an invitation may be accepted.
pub const INVITATION_LIFETIME: Duration = Duration::days(7);

/// A newly generated opaque token: the only moment the plaintext exists.
pub struct NewToken {
    pub plaintext: String,
    pub hash: [u8; 32],
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewToken(<redacted>)")
    }
}

pub fn generate_token(prefix: &str) -> Result<NewToken, AccountsError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| AccountsError::Random(e.to_string()))?;
    let plaintext = format!("{prefix}{}", hex::encode(secret));
    let hash = hash_token(&plaintext);
    Ok(NewToken { plaintext, hash })
}

pub fn hash_token(plaintext: &str) -> [u8; 32] {
    Sha256::digest(plaintext.as_bytes()).into()
}

/// Whether `token` has the one shape we issue with `prefix`: checked before any look-up.
pub fn is_well_formed_token(token: &str, prefix: &str) -> bool {
    token.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == TOKEN_HEX_DIGITS && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("the vendor code is already taken")]
    VendorCodeTaken,
    #[error("the email address is already registered")]
    EmailTaken,
    #[error("the ledger refused the registration: {0}")]
    Refused(ledger_core::Rejection),
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    #[error("api key: {0}")]
    ApiKey(#[from] crate::api_keys::ApiKeyError),
    #[error("stored account row is malformed: {0}")]
    Malformed(String),
    #[error("no randomness available: {0}")]
    Random(String),
}

fn stored_role(raw: &str) -> Result<Role, AccountsError> {
    Role::parse(raw).map_err(|_| AccountsError::Malformed(format!("role {raw:?}")))
}

// ---------------------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------------------

/// The first user of a tenant.
pub struct NewOwner {
    /// Chosen by the caller, so the registration event can name its actor.
    pub user_id: Uuid,
    pub email: Email,
    /// argon2id PHC string.
    pub password_hash: String,
}

impl std::fmt::Debug for NewOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewOwner")
            .field("user_id", &self.user_id)
            .field("email", &self.email)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

/// Everything a tenant starts with. Used by `POST /v1/signup` and `loyalty tenant create`.
#[derive(Debug)]
pub struct Registration {
    pub tenant_id: TenantId,
    pub vendor_code: VendorCode,
    pub name: String,
    pub currency: Currency,
    pub expiry_days: u32,
    pub rule_set: RuleSet,
    pub owner: Option<NewOwner>,
    /// Label of a first API key (role staff) to create, if any.
    pub first_api_key_label: Option<String>,
    pub metadata: EventMetadata,
    pub at: DateTime<Utc>,
}

#[derive(Debug)]
pub struct Registered {
    pub tenant_id: TenantId,
    pub owner_user_id: Option<Uuid>,
    pub api_key: Option<crate::api_keys::NewApiKey>,
}

/// Registers a tenant in one transaction: its directory row, its owner, its chain head and
/// its `TenantRegistered` event (decided by the ledger), and optionally a first API key.
/// Either all of it exists afterwards or none of it.
pub async fn register_tenant(
    client: &mut deadpool_postgres::Client,
    registration: Registration,
) -> Result<Registered, AccountsError> {
    let tenant_id = registration.tenant_id;
    let transaction = crate::tenancy::begin(client, tenant_id).await?;
    let inserted = transaction
        .execute(
            "INSERT INTO tenants (tenant_id, vendor_code, name) VALUES ($1, $2, $3)",
            &[
                &tenant_id.as_uuid(),
                &registration.vendor_code.as_str(),
                &registration.name,
            ],
        )
        .await;
    match inserted {
        Err(e) if is_unique_violation(&e, "tenants_vendor_code_key") => {
            return Err(AccountsError::VendorCodeTaken)
        }
        other => other?,
    };
    let owner_user_id = match &registration.owner {
        Some(owner) => {
            let user = NewUser {
                user_id: owner.user_id,
                email: &owner.email,
                display_name: "",
                role: Role::Owner,
                password_hash: Some(&owner.password_hash),
                created_by: None,
            };
            Some(insert_user(&*transaction, tenant_id, user).await?)
        }
        None => None,
    };
    store::create_tenant_heads(&transaction, &[tenant_id]).await?;
    let command = Command::RegisterTenant {
        tenant_id,
        name: registration.name.clone(),
        currency: registration.currency,
        expiry_days: registration.expiry_days,
        rule_set: registration.rule_set.clone(),
        at: registration.at,
    };
    let state = LedgerState {
        tenant: &TenantState::default(),
        customer: &CustomerState::default(),
        stock: &ledger_core::aggregate::NO_STOCK_USED,
    };
    let events = ledger_core::decide(state, &command).map_err(AccountsError::Refused)?;
    store::append_in(
        &transaction,
        tenant_id,
        StreamId::Tenant(tenant_id),
        ExpectedVersion::NoStream,
        &events,
        &registration.metadata,
    )
    .await?;
    let api_key = match &registration.first_api_key_label {
        Some(label) => Some(
            crate::api_keys::create(&*transaction, tenant_id, label, Role::Staff.as_str()).await?,
        ),
        None => None,
    };
    transaction.commit().await?;
    Ok(Registered {
        tenant_id,
        owner_user_id,
        api_key,
    })
}

struct NewUser<'a> {
    user_id: Uuid,
    email: &'a Email,
    display_name: &'a str,
    role: Role,
    password_hash: Option<&'a str>,
    created_by: Option<Uuid>,
}

async fn insert_user(
    client: &impl GenericClient,
    tenant_id: TenantId,
    user: NewUser<'_>,
) -> Result<Uuid, AccountsError> {
    let NewUser {
        user_id,
        email,
        display_name,
        role,
        password_hash,
        created_by,
    } = user;
    let inserted = client
        .execute(
            "INSERT INTO users (user_id, tenant_id, email, display_name, role, password_hash, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &user_id,
                &tenant_id.as_uuid(),
                &email.as_str(),
                &display_name,
                &role.as_str(),
                &password_hash,
                &created_by,
            ],
        )
        .await;
    match inserted {
        Ok(_) => Ok(user_id),
        Err(e) if is_unique_violation(&e, "users_email_key") => Err(AccountsError::EmailTaken),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------

/// A user found by email at login, before the tenant is known.
pub struct LoginCandidate {
    pub user_id: Uuid,
    pub tenant_id: TenantId,
    pub role: Role,
    /// `None` until an invited user accepts.
    pub password_hash: Option<String>,
    pub disabled: bool,
}

impl std::fmt::Debug for LoginCandidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginCandidate")
            .field("user_id", &self.user_id)
            .field("tenant_id", &self.tenant_id)
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

pub async fn user_by_email(
    client: &impl GenericClient,
    email: &Email,
) -> Result<Option<LoginCandidate>, AccountsError> {
    let row = client
        .query_opt(
            "SELECT user_id, tenant_id, role, password_hash, disabled_at \
             FROM tenancy.user_by_email($1)",
            &[&email.as_str()],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let role: String = row.try_get(2)?;
    Ok(Some(LoginCandidate {
        user_id: row.try_get(0)?,
        tenant_id: TenantId::from_uuid(row.try_get(1)?),
        role: stored_role(&role)?,
        password_hash: row.try_get(3)?,
        disabled: row.try_get::<_, Option<DateTime<Utc>>>(4)?.is_some(),
    }))
}

/// Whether a user may act now, and as what. A user may act when not disabled and holding a
/// password (an invitation not yet accepted does not count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserStatus {
    pub role: Role,
    pub active: bool,
}

/// The status of a user of the transaction's tenant; `None` for an unknown user.
pub async fn user_status(
    client: &impl GenericClient,
    user_id: Uuid,
) -> Result<Option<UserStatus>, AccountsError> {
    let row = client
        .query_opt(
            "SELECT role, disabled_at IS NULL AND password_hash IS NOT NULL FROM users \
             WHERE user_id = $1",
            &[&user_id],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let role: String = row.try_get(0)?;
    Ok(Some(UserStatus {
        role: stored_role(&role)?,
        active: row.try_get(1)?,
    }))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
    pub disabled_at: Option<DateTime<Utc>>,
    /// Whether the user has set a password (accepted the invitation, or signed up).
    pub has_password: bool,
}

/// Users of the transaction's tenant, oldest first (at most `limit`).
pub async fn list_users(
    client: &impl GenericClient,
    limit: i64,
) -> Result<Vec<UserSummary>, AccountsError> {
    let rows = client
        .query(
            "SELECT user_id, email, display_name, role, created_at, created_by, disabled_at, \
                    password_hash IS NOT NULL \
             FROM users ORDER BY created_at, user_id LIMIT $1",
            &[&limit],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let role: String = row.try_get(3)?;
            Ok(UserSummary {
                user_id: row.try_get(0)?,
                email: row.try_get(1)?,
                display_name: row.try_get(2)?,
                role: stored_role(&role)?,
                created_at: row.try_get(4)?,
                created_by: row.try_get(5)?,
                disabled_at: row.try_get(6)?,
                has_password: row.try_get(7)?,
            })
        })
        .collect()
}

#[derive(Debug)]
pub struct Invited {
    pub user_id: Uuid,
    pub invitation_id: Uuid,
    pub token: NewToken,
    pub expires_at: DateTime<Utc>,
}

/// Creates a user without a password and an invitation to choose one. The transaction must
/// be scoped to `tenant_id`.
pub async fn invite_user(
    client: &impl GenericClient,
    tenant_id: TenantId,
    email: &Email,
    display_name: &str,
    role: Role,
    invited_by: Uuid,
    now: DateTime<Utc>,
) -> Result<Invited, AccountsError> {
    let user = NewUser {
        user_id: Uuid::now_v7(),
        email,
        display_name,
        role,
        password_hash: None,
        created_by: Some(invited_by),
    };
    let user_id = insert_user(client, tenant_id, user).await?;
    let token = generate_token(INVITATION_TOKEN_PREFIX)?;
    let invitation_id = Uuid::now_v7();
    let expires_at = now + INVITATION_LIFETIME;
    client
        .execute(
            "INSERT INTO user_invitations (invitation_id, tenant_id, user_id, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &invitation_id,
                &tenant_id.as_uuid(),
                &user_id,
                &token.hash.as_slice(),
                &now,
                &expires_at,
            ],
        )
        .await?;
    Ok(Invited {
        user_id,
        invitation_id,
        token,
        expires_at,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub invitation_id: Uuid,
    pub tenant_id: TenantId,
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
}

/// An invitation by its token's hash, before the tenant is known.
pub async fn invitation_by_hash(
    client: &impl GenericClient,
    token_hash: &[u8; 32],
) -> Result<Option<Invitation>, AccountsError> {
    let row = client
        .query_opt(
            "SELECT invitation_id, tenant_id, user_id, expires_at, accepted_at \
             FROM tenancy.invitation_by_hash($1)",
            &[&token_hash.as_slice()],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(Invitation {
        invitation_id: row.try_get(0)?,
        tenant_id: TenantId::from_uuid(row.try_get(1)?),
        user_id: row.try_get(2)?,
        expires_at: row.try_get(3)?,
        accepted_at: row.try_get(4)?,
    }))
}

/// Accepts an invitation: marks it accepted and sets the user's password, once. Returns the
/// user's role, or `None` when the invitation was already accepted, has expired, or its
/// user is disabled (a concurrent acceptance loses here, not later). The transaction must be
/// scoped to the invitation's tenant.
pub async fn accept_invitation(
    client: &impl GenericClient,
    invitation_id: Uuid,
    password_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<(Uuid, Role)>, AccountsError> {
    let accepted = client
        .query_opt(
            "UPDATE user_invitations SET accepted_at = $2 \
             WHERE invitation_id = $1 AND accepted_at IS NULL AND expires_at > $2 \
             RETURNING user_id",
            &[&invitation_id, &now],
        )
        .await?;
    let Some(accepted) = accepted else {
        return Ok(None);
    };
    let user_id: Uuid = accepted.try_get(0)?;
    let updated = client
        .query_opt(
            "UPDATE users SET password_hash = $2 WHERE user_id = $1 AND disabled_at IS NULL \
             RETURNING role",
            &[&user_id, &password_hash],
        )
        .await?;
    match updated {
        Some(row) => {
            let role: String = row.try_get(0)?;
            Ok(Some((user_id, stored_role(&role)?)))
        }
        None => Ok(None),
    }
}

/// Why a user could not be disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisableRefusal {
    UnknownUser,
    /// Owners cannot lock themselves out.
    OwnSelf,
    /// The tenant would be left without an owner who can act.
    LastActiveOwner,
}

/// Disables a user of the transaction's tenant and revokes every refresh token they hold.
/// Disabling an already disabled user succeeds again (idempotent). The owners' rows are
/// locked first, so two owners disabling each other at once cannot both succeed.
pub async fn disable_user(
    client: &impl GenericClient,
    acting_user: Option<Uuid>,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Result<(), DisableRefusal>, AccountsError> {
    let owners = client
        .query(
            "SELECT user_id, disabled_at IS NULL AND password_hash IS NOT NULL FROM users \
             WHERE role = 'owner' ORDER BY user_id FOR UPDATE",
            &[],
        )
        .await?;
    let target = client
        .query_opt(
            "SELECT role FROM users WHERE user_id = $1 FOR UPDATE",
            &[&user_id],
        )
        .await?;
    let Some(target) = target else {
        return Ok(Err(DisableRefusal::UnknownUser));
    };
    if acting_user == Some(user_id) {
        return Ok(Err(DisableRefusal::OwnSelf));
    }
    let role: String = target.try_get(0)?;
    if stored_role(&role)? == Role::Owner {
        let mut others_active = 0;
        for owner in &owners {
            let id: Uuid = owner.try_get(0)?;
            let active: bool = owner.try_get(1)?;
            if id != user_id && active {
                others_active += 1;
            }
        }
        if others_active == 0 {
            return Ok(Err(DisableRefusal::LastActiveOwner));
        }
    }
    client
        .execute(
            "UPDATE users SET disabled_at = coalesce(disabled_at, $2) WHERE user_id = $1",
            &[&user_id, &now],
        )
        .await?;
    client
        .execute(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
            &[&user_id, &now],
        )
        .await?;
    Ok(Ok(()))
}

// ---------------------------------------------------------------------------------------
// Refresh tokens
// ---------------------------------------------------------------------------------------

/// A stored refresh token, as found by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRefreshToken {
    pub token_id: Uuid,
    pub family_id: Uuid,
    pub tenant_id: TenantId,
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What presenting a refresh token leads to: the rotation state machine, decided purely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshVerdict {
    /// Valid: mark it used and issue its successor in the same family.
    Rotate,
    /// Already used: someone replayed it, so the thief or the owner holds its successor.
    /// Revoke the whole family and refuse.
    ReuseDetected,
    Revoked,
    Expired,
}

impl StoredRefreshToken {
    pub fn verdict(&self, now: DateTime<Utc>) -> RefreshVerdict {
        // Order matters: a revoked family stays revoked whatever else is true; reuse is
        // checked before expiry so that a replayed token still burns its family.
        if self.revoked_at.is_some() {
            RefreshVerdict::Revoked
        } else if self.used_at.is_some() {
            RefreshVerdict::ReuseDetected
        } else if self.expires_at <= now {
            RefreshVerdict::Expired
        } else {
            RefreshVerdict::Rotate
        }
    }
}

pub async fn refresh_token_by_hash(
    client: &impl GenericClient,
    token_hash: &[u8; 32],
) -> Result<Option<StoredRefreshToken>, AccountsError> {
    let row = client
        .query_opt(
            "SELECT token_id, family_id, tenant_id, user_id, expires_at, used_at, revoked_at \
             FROM tenancy.refresh_token_by_hash($1)",
            &[&token_hash.as_slice()],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(StoredRefreshToken {
        token_id: row.try_get(0)?,
        family_id: row.try_get(1)?,
        tenant_id: TenantId::from_uuid(row.try_get(2)?),
        user_id: row.try_get(3)?,
        expires_at: row.try_get(4)?,
        used_at: row.try_get(5)?,
        revoked_at: row.try_get(6)?,
    }))
}

/// Issues a refresh token of `family_id` (a new family for a new login). The transaction
/// must be scoped to `tenant_id`.
pub async fn issue_refresh_token(
    client: &impl GenericClient,
    tenant_id: TenantId,
    user_id: Uuid,
    family_id: Uuid,
    now: DateTime<Utc>,
) -> Result<NewToken, AccountsError> {
    let token = generate_token(REFRESH_TOKEN_PREFIX)?;
    client
        .execute(
            "INSERT INTO refresh_tokens (token_id, family_id, tenant_id, user_id, token_hash, issued_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &Uuid::now_v7(),
                &family_id,
                &tenant_id.as_uuid(),
                &user_id,
                &token.hash.as_slice(),
                &now,
                &(now + REFRESH_TOKEN_LIFETIME),
            ],
        )
        .await?;
    Ok(token)
}

/// Marks a token used, if nobody did first; `false` means a concurrent refresh won, which is
/// treated as reuse.
pub async fn mark_refresh_token_used(
    client: &impl GenericClient,
    token_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, AccountsError> {
    let updated = client
        .execute(
            "UPDATE refresh_tokens SET used_at = $2 \
             WHERE token_id = $1 AND used_at IS NULL AND revoked_at IS NULL",
            &[&token_id, &now],
        )
        .await?;
    Ok(updated == 1)
}

/// Revokes every token of a family (logout, theft detection).
pub async fn revoke_refresh_family(
    client: &impl GenericClient,
    family_id: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, AccountsError> {
    Ok(client
        .execute(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
            &[&family_id, &now],
        )
        .await?)
}

// ---------------------------------------------------------------------------------------
// API keys (management; creation and the hot-path look-up are in `api_keys`)
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeySummary {
    pub api_key_id: Uuid,
    pub label: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Creates a key with a role and its creator. The transaction must be scoped to the tenant.
pub async fn create_api_key(
    client: &impl GenericClient,
    tenant_id: TenantId,
    label: &str,
    role: Role,
    created_by: Option<Uuid>,
) -> Result<crate::api_keys::NewApiKey, AccountsError> {
    let key = crate::api_keys::create(client, tenant_id, label, role.as_str()).await?;
    client
        .execute(
            "UPDATE api_keys SET created_by = $2 WHERE api_key_id = $1",
            &[&key.api_key_id, &created_by],
        )
        .await?;
    Ok(key)
}

/// Keys of the transaction's tenant, newest first (at most `limit`). No secret, no hash.
pub async fn list_api_keys(
    client: &impl GenericClient,
    limit: i64,
) -> Result<Vec<ApiKeySummary>, AccountsError> {
    let rows = client
        .query(
            "SELECT api_key_id, label, role, created_at, created_by, last_used_at, revoked_at \
             FROM api_keys ORDER BY created_at DESC, api_key_id LIMIT $1",
            &[&limit],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let role: String = row.try_get(2)?;
            Ok(ApiKeySummary {
                api_key_id: row.try_get(0)?,
                label: row.try_get(1)?,
                role: stored_role(&role)?,
                created_at: row.try_get(3)?,
                created_by: row.try_get(4)?,
                last_used_at: row.try_get(5)?,
                revoked_at: row.try_get(6)?,
            })
        })
        .collect()
}

/// Revokes a key of the transaction's tenant. `false`: no such key (or another tenant's).
/// Revoking a revoked key succeeds again and keeps the first revocation time.
pub async fn revoke_api_key(
    client: &impl GenericClient,
    api_key_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, AccountsError> {
    let updated = client
        .execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE api_key_id = $1",
            &[&api_key_id, &now],
        )
        .await?;
    Ok(updated == 1)
}

/// Records that a key was used, unless that was recorded in the last minute: the hot path
/// calls this at most once a minute per key per process, and the condition keeps several
/// processes from rewriting the row more often than that.
pub async fn touch_api_key(
    client: &impl GenericClient,
    api_key_id: Uuid,
) -> Result<(), AccountsError> {
    client
        .execute(
            "UPDATE api_keys SET last_used_at = now() WHERE api_key_id = $1 \
             AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
            &[&api_key_id],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_permission_matrix() {
        use Permission as P;
        // (role, permissions it has); every other permission must be refused.
        let table: [(Role, &[Permission]); 4] = [
            (Role::Owner, &Permission::ALL),
            (
                Role::Staff,
                &[
                    P::EnrolCustomer,
                    P::LogPurchase,
                    P::RedeemPoints,
                    P::ReadCustomer,
                    P::ReadHistory,
                    P::ReadPersonalData,
                    P::ReadRewards,
                    P::FulfilRedemptions,
                    P::ReadProgramme,
                    P::RefundPurchases,
                    P::CancelHolds,
                    P::ReadRules,
                    P::SendBroadcasts,
                    P::ReadBroadcasts,
                ],
            ),
            (
                Role::Auditor,
                &[
                    P::ReadCustomer,
                    P::ReadHistory,
                    P::ReadRewards,
                    P::ReadProgramme,
                    P::ReadRules,
                    P::ReadBooks,
                    P::ExportLedger,
                ],
            ),
            (
                Role::Analyst,
                &[
                    P::ReadCustomer,
                    P::ReadRewards,
                    P::ReadProgramme,
                    P::ReadRules,
                    P::DryRunRules,
                    P::ReadBooks,
                    P::ReadAnalytics,
                ],
            ),
        ];
        for (role, granted) in table {
            for permission in Permission::ALL {
                assert_eq!(
                    role.allows(permission),
                    granted.contains(&permission),
                    "{role} {permission:?}"
                );
            }
        }
    }

    #[test]
    fn only_owners_manage_users_keys_and_personal_data_and_no_key_is_an_owner() {
        for role in Role::ALL {
            let owner = role == Role::Owner;
            assert_eq!(role.allows(Permission::ManageUsers), owner);
            assert_eq!(role.allows(Permission::ManageApiKeys), owner);
            assert_eq!(role.allows(Permission::ManagePersonalData), owner);
            assert_eq!(role.allows(Permission::ManageRewards), owner);
            assert_eq!(role.allows(Permission::ManageWhatsApp), owner);
            assert_eq!(role.allows(Permission::ManageRules), owner);
            assert_eq!(role.may_hold_api_key(), !owner);
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        assert!(Role::parse("Owner").is_err());
        assert!(Role::parse("admin").is_err());
    }

    #[test]
    fn vendor_codes_are_upper_case_letters_and_digits() {
        assert_eq!(VendorCode::parse("demoshop").unwrap().as_str(), "DEMOSHOP");
        assert_eq!(VendorCode::parse(" Ab1 ").unwrap().as_str(), "AB1");
        assert_eq!(
            VendorCode::parse(&"A".repeat(20)).unwrap().as_str(),
            "A".repeat(20)
        );
        for bad in [
            "",
            "AB",
            &"A".repeat(21),
            "DEMO-SHOP",
            "DEMO SHOP",
            "ÄBC",
            "abc_1",
        ] {
            assert_eq!(VendorCode::parse(bad), Err(InvalidVendorCode), "{bad:?}");
        }
    }

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            Email::parse(" Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "a@b",
            "@example.com",
            "ada@",
            "ada@.com",
            "ada@example.",
            "a da@x.com",
            "ada@@x.com",
            "ada",
        ] {
            assert_eq!(Email::parse(bad), Err(InvalidEmail), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long), Err(InvalidEmail));
        assert_eq!(
            format!("{:?}", Email::parse("ada@example.com").unwrap()),
            "Email(<redacted>)"
        );
    }

    #[test]
    fn tokens_have_their_prefix_and_are_stored_as_a_hash() {
        let token = generate_token(REFRESH_TOKEN_PREFIX).unwrap();
        assert!(is_well_formed_token(&token.plaintext, REFRESH_TOKEN_PREFIX));
        assert!(!is_well_formed_token(
            &token.plaintext,
            INVITATION_TOKEN_PREFIX
        ));
        assert_eq!(token.hash, hash_token(&token.plaintext));
        assert!(!format!("{token:?}").contains(&token.plaintext[3..]));
        assert!(!is_well_formed_token("lr_ABC", REFRESH_TOKEN_PREFIX));
    }

    #[test]
    fn the_refresh_rotation_state_machine() {
        let now = Utc::now();
        let fresh = StoredRefreshToken {
            token_id: Uuid::nil(),
            family_id: Uuid::nil(),
            tenant_id: TenantId::from_uuid(Uuid::nil()),
            user_id: Uuid::nil(),
            expires_at: now + Duration::days(1),
            used_at: None,
            revoked_at: None,
        };
        let used = StoredRefreshToken {
            used_at: Some(now),
            ..fresh.clone()
        };
        let revoked = StoredRefreshToken {
            revoked_at: Some(now),
            ..fresh.clone()
        };
        let expired = StoredRefreshToken {
            expires_at: now,
            ..fresh.clone()
        };
        let used_and_expired = StoredRefreshToken {
            expires_at: now,
            ..used.clone()
        };
        let used_and_revoked = StoredRefreshToken {
            revoked_at: Some(now),
            ..used.clone()
        };
        let table = [
            (&fresh, RefreshVerdict::Rotate),
            (&used, RefreshVerdict::ReuseDetected),
            (&revoked, RefreshVerdict::Revoked),
            (&expired, RefreshVerdict::Expired),
            (&used_and_expired, RefreshVerdict::ReuseDetected),
            (&used_and_revoked, RefreshVerdict::Revoked),
        ];
        for (token, verdict) in table {
            assert_eq!(token.verdict(now), verdict, "{token:?}");
        }
    }
}
