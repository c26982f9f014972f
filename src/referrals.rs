//! The referral process: credits a referrer when a referee's first purchase qualified the
//! referral.
//!
//! The referee's purchase is decided on the referee's stream, and a decision changes one
//! stream only, so the purchase records `ReferralQualified { referrer, referrer_bonus }`
//! there and this process carries it over: a [`Projection`] run by `projections::runner` as
//! the durable consumer `referrals` (checkpoint in the same table as every projector's),
//! which submits `AwardReferralBonus { referrer, referee, points, lot_id }` to the
//! group-commit writer for each `ReferralQualified` it reads.
//!
//! **Exactly once, by the ledger.** JetStream delivers at least once and the checkpoint
//! commits after the awards, so an event can be seen twice (a redelivery, a restart after
//! the award committed but before the checkpoint, a rebuild). The referrer's stream
//! remembers the referees already rewarded and refuses a second award with
//! `ReferralAlreadyAwarded`, which this process counts as done. Any other refusal (the
//! referrer's stream does not exist in this tenant) is permanent too: it is logged and
//! passed over, so one bad event cannot stall the consumer. Only an unavailable writer
//! fails the batch, which the runner retries.
//!
//! **Deployment.** `loyalty all` runs it beside the writer. In a split deployment it runs
//! as `loyalty project referrals`, which starts its own writer (see docs/PROGRAMME.md):
//! like every writer it takes the tenant's head lock per batch, so it is safe beside the
//! API's writers.

use deadpool_postgres::Transaction;
use ledger_core::events::{Actor, EventMetadata};
use ledger_core::{Command, CustomerId, Event, LotId, StreamId};
use projections::runner::{Projection, ProjectionError};
use schema::store::RecordedEvent;
use schema::writer::{Outcome, Submission, Verdict, WriterHandle};
use schema::{Refusal, StoredResponse};
use uuid::Uuid;

/// Durable consumer and checkpoint name of the process.
pub const NAME: &str = "referrals";
/// The only event type the process reads; every other event is passed over undecoded.
const QUALIFIED_TYPE: &str = "ReferralQualified";

pub struct Referrals {
    pub writer: WriterHandle,
}

/// What became of one `ReferralQualified`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Award {
    Awarded,
    /// `ReferralAlreadyAwarded`: an earlier delivery credited it.
    AlreadyAwarded,
    /// Refused for another reason (logged; permanent).
    Refused(String),
}

impl Projection for Referrals {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(
        &self,
        _transaction: &Transaction<'_>,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        for recorded in events.iter().filter(|e| e.event_type == QUALIFIED_TYPE) {
            let Event::ReferralQualified(qualified) = recorded.decode()? else {
                continue;
            };
            let Ok(StreamId::Customer(referee)) = StreamId::parse(&recorded.stream_id) else {
                continue;
            };
            let award = award(
                &self.writer,
                recorded,
                referee,
                qualified.referrer,
                qualified.referrer_bonus,
            )
            .await?;
            match award {
                Award::Awarded => tracing::info!(
                    tenant_id = %recorded.tenant_id,
                    event_id = %recorded.event_id,
                    "referral bonus awarded"
                ),
                Award::AlreadyAwarded => tracing::debug!(
                    event_id = %recorded.event_id,
                    "referral bonus already awarded"
                ),
                Award::Refused(why) => tracing::warn!(
                    tenant_id = %recorded.tenant_id,
                    event_id = %recorded.event_id,
                    why,
                    "referral bonus refused; passed over"
                ),
            }
        }
        Ok(())
    }

    /// Nothing of its own to empty: a rebuild submits every award again, and the ledger
    /// refuses the ones already made.
    async fn reset(&self, _transaction: &Transaction<'_>) -> Result<(), ProjectionError> {
        Ok(())
    }
}

/// Submits the award for one `ReferralQualified` (`recorded`) and says what became of it.
pub async fn award(
    writer: &WriterHandle,
    recorded: &RecordedEvent,
    referee: CustomerId,
    referrer: CustomerId,
    points: ledger_core::Points,
) -> Result<Award, ProjectionError> {
    let submission = Submission {
        tenant_id: recorded.tenant_id,
        command: Command::AwardReferralBonus {
            customer_id: referrer,
            referee,
            points,
            lot_id: LotId::from_uuid(Uuid::now_v7()),
            at: chrono::Utc::now(),
        },
        metadata: EventMetadata {
            actor: Actor::System(NAME.into()),
            correlation_id: Uuid::now_v7(),
            causation_id: Some(recorded.event_id),
        },
        idempotency: None,
        render: render_award,
    };
    let outcome = writer
        .submit(submission)
        .await
        .map_err(|e| ProjectionError::Unavailable(e.to_string()))?;
    let response = match outcome {
        Outcome::Decided { response, .. } | Outcome::Replayed(response) => response,
        Outcome::KeyReusedWithDifferentRequest => {
            return Ok(Award::Refused("idempotency key reused".into()))
        }
    };
    Ok(match response.status {
        201 => Award::Awarded,
        208 => Award::AlreadyAwarded,
        _ => Award::Refused(String::from_utf8_lossy(&response.body).into_owned()),
    })
}

/// 201 awarded, 208 already awarded, 409 with the refusal otherwise (never shown to anyone:
/// the process reads it).
fn render_award(_: &Submission, verdict: &Verdict<'_>) -> StoredResponse {
    match verdict {
        Verdict::Accepted { .. } => StoredResponse {
            status: 201,
            body: Vec::new(),
        },
        Verdict::Refused(Refusal::Rejected(ledger_core::Rejection::ReferralAlreadyAwarded)) => {
            StoredResponse {
                status: 208,
                body: Vec::new(),
            }
        }
        Verdict::Refused(refusal) => StoredResponse {
            status: 409,
            body: format!("{refusal:?}").into_bytes(),
        },
    }
}
