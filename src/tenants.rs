//! Registering a tenant from the command line: its directory row, optionally its owner, its
//! `TenantRegistered` event and its first API key, in one transaction through
//! `schema::accounts::register_tenant` (the same code as `POST /v1/signup`).

use ledger_api::passwords::{self, Password};
use ledger_core::events::{Actor, EventMetadata};
use ledger_core::rules::{Rule, RuleKind, RuleSet};
use ledger_core::{Currency, MinorUnits, Points, TenantId};
use schema::accounts::{AccountsError, Email, NewOwner, Registration, VendorCode};
use uuid::Uuid;

/// The owner to create with the tenant.
#[derive(Debug, Clone)]
pub struct OwnerAccount {
    pub email: Email,
    pub password: Password,
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub vendor_code: VendorCode,
    pub name: String,
    pub currency: Currency,
    pub expiry_days: u32,
    pub rule_set: RuleSet,
    pub owner: Option<OwnerAccount>,
}

impl NewTenant {
    /// A tenant with one `per_amount_spent` rule and no owner account.
    pub fn per_amount_spent(
        vendor_code: VendorCode,
        name: String,
        currency: Currency,
        expiry_days: u32,
        amount_step: MinorUnits,
        points_per_step: Points,
        minimum_purchase: MinorUnits,
    ) -> Result<Self, ledger_core::rules::InvalidRuleSet> {
        let rule_set = RuleSet::new(
            1,
            vec![Rule::new(
                "rule-1",
                RuleKind::PerAmountSpent {
                    amount_step,
                    points_per_step,
                    minimum_purchase,
                },
            )],
        )?;
        Ok(NewTenant {
            vendor_code,
            name,
            currency,
            expiry_days,
            rule_set,
            owner: None,
        })
    }
}

#[derive(Debug)]
pub struct CreatedTenant {
    pub tenant_id: TenantId,
    pub vendor_code: VendorCode,
    pub owner_user_id: Option<Uuid>,
    pub api_key: schema::api_keys::NewApiKey,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateTenantError {
    #[error("the vendor code is already taken")]
    VendorCodeTaken,
    #[error("the owner's email address is already registered")]
    EmailTaken,
    #[error("registration: {0}")]
    Accounts(AccountsError),
    #[error("hashing the owner's password: {0}")]
    Password(#[from] passwords::PasswordError),
    #[error("hashing the owner's password: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("the registration returned no API key")]
    Unexpected,
}

impl From<AccountsError> for CreateTenantError {
    fn from(error: AccountsError) -> Self {
        match error {
            AccountsError::VendorCodeTaken => CreateTenantError::VendorCodeTaken,
            AccountsError::EmailTaken => CreateTenantError::EmailTaken,
            other => CreateTenantError::Accounts(other),
        }
    }
}

pub async fn create(
    pool: &schema::Pool,
    tenant: NewTenant,
) -> Result<CreatedTenant, CreateTenantError> {
    let owner = match tenant.owner {
        Some(owner) => {
            let password = owner.password;
            let password_hash =
                tokio::task::spawn_blocking(move || passwords::hash(&password)).await??;
            Some(NewOwner {
                user_id: Uuid::now_v7(),
                email: owner.email,
                password_hash,
            })
        }
        None => None,
    };
    let owner_user_id = owner.as_ref().map(|o| o.user_id);
    let registration = Registration {
        tenant_id: TenantId::from_uuid(Uuid::now_v7()),
        vendor_code: tenant.vendor_code.clone(),
        name: tenant.name,
        currency: tenant.currency,
        expiry_days: tenant.expiry_days,
        rule_set: tenant.rule_set,
        owner,
        first_api_key_label: Some("default".to_owned()),
        metadata: EventMetadata {
            actor: Actor::System("cli".into()),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
        },
        at: ledger_api::commands::now(),
    };
    let mut client = pool.get().await?;
    let registered = schema::accounts::register_tenant(&mut client, registration).await?;
    Ok(CreatedTenant {
        tenant_id: registered.tenant_id,
        vendor_code: tenant.vendor_code,
        owner_user_id,
        api_key: registered.api_key.ok_or(CreateTenantError::Unexpected)?,
    })
}
