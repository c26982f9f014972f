//! The fan-out side of the ledger: the relay that publishes the event table to NATS
//! JetStream, and the projectors that turn the stream into read models.
//!
//! Reading order: [`envelope`] (what a message on the stream carries), [`nats`] (connecting
//! and the stream's configuration), [`relay`] (event table → JetStream, exactly once on the
//! stream), [`runner`] (a durable consumer applying batches effectively once), then
//! [`balances`] (the balances and lots read model, live and rebuilt), [`analytics`] (the
//! analytics read model, guarded by tenant sequence) and [`whatsapp_analytics`] (WhatsApp
//! traffic per day, recomputed from the WhatsApp tables).
//!
//! Architecture invariant: the relay is the only writer to JetStream; projectors write only
//! their own read-model tables and checkpoints, never the event table.

pub mod analytics;
pub mod balances;
pub mod envelope;
pub mod nats;
pub mod relay;
pub mod runner;
pub mod whatsapp_analytics;

/// Signals long-running loops to finish the work in hand and stop.
pub type Shutdown = tokio::sync::watch::Receiver<bool>;

/// Waits until `shutdown` says stop (or its sender is gone).
pub async fn stopped(shutdown: &mut Shutdown) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}
