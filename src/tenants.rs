//! Registering a tenant: its `TenantRegistered` event and its first API key.

use chrono::Utc;
use ledger_core::events::{Actor, EventMetadata};
use ledger_core::rules::{Rule, RuleSet};
use ledger_core::{Command, Currency, MinorUnits, Points, TenantId};
use schema::writer::{Outcome, Refusal, Submission, WriterHandle};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub name: String,
    pub currency: Currency,
    pub expiry_days: u32,
    pub rule_set: RuleSet,
}

impl NewTenant {
    /// A tenant with one `per_amount_spent` rule.
    pub fn per_amount_spent(
        name: String,
        currency: Currency,
        expiry_days: u32,
        amount_step: MinorUnits,
        points_per_step: Points,
        minimum_purchase: MinorUnits,
    ) -> Result<Self, ledger_core::rules::InvalidRuleSet> {
        let rule_set = RuleSet::new(
            1,
            vec![Rule::PerAmountSpent {
                amount_step,
                points_per_step,
                minimum_purchase,
            }],
        )?;
        Ok(NewTenant {
            name,
            currency,
            expiry_days,
            rule_set,
        })
    }
}

#[derive(Debug)]
pub struct CreatedTenant {
    pub tenant_id: TenantId,
    pub api_key: schema::api_keys::NewApiKey,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateTenantError {
    #[error("the ledger refused the registration: {0:?}")]
    Refused(Refusal),
    #[error("writer: {0}")]
    Writer(#[from] schema::WriterError),
    #[error("api key: {0}")]
    ApiKey(#[from] schema::api_keys::ApiKeyError),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("unexpected writer outcome")]
    Unexpected,
}

pub async fn create(
    pool: &schema::Pool,
    writer: &WriterHandle,
    tenant: NewTenant,
) -> Result<CreatedTenant, CreateTenantError> {
    let tenant_id = TenantId::from_uuid(Uuid::now_v7());
    let submission = Submission {
        tenant_id,
        command: Command::RegisterTenant {
            tenant_id,
            name: tenant.name,
            currency: tenant.currency,
            expiry_days: tenant.expiry_days,
            rule_set: tenant.rule_set,
            at: Utc::now(),
        },
        metadata: EventMetadata {
            actor: Actor::System("cli".into()),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
        },
        idempotency: None,
        render: schema::writer::render_status_only,
    };
    match writer.submit(submission).await? {
        Outcome::Decided { events, .. } if !events.is_empty() => {}
        Outcome::Decided { .. } => {
            return Err(CreateTenantError::Refused(Refusal::Rejected(
                ledger_core::Rejection::TenantAlreadyRegistered,
            )))
        }
        _ => return Err(CreateTenantError::Unexpected),
    }
    let mut client = pool.get().await?;
    let transaction = schema::tenancy::begin(&mut client, tenant_id).await?;
    let api_key = schema::api_keys::create(&*transaction, tenant_id, "default", "staff").await?;
    transaction.commit().await?;
    Ok(CreatedTenant { tenant_id, api_key })
}
