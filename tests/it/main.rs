//! The integration suite: every test talks to a real PostgreSQL and a real NATS JetStream
//! server (see `helpers`). One test binary, one module per feature.

mod helpers;

mod accounts;
mod analytics;
mod api_purchases;
mod audit;
mod books;
mod broadcasts;
mod catalogue;
mod cli;
mod conversation;
mod crash;
mod e2e;
mod edge;
mod event_store;
mod expiry;
mod ingest;
mod keys;
mod notifications;
mod notifier;
mod people;
mod programme;
mod projection;
mod relay;
mod rewards;
mod rules;
mod tenancy;
mod whatsapp_numbers;
