//! The `loyalty` binary's library: typed settings, the wiring that starts components, the
//! commands that are not a long-running component (tenant creation, the expiry run).
//!
//! Reading order: [`settings`], [`app`] (what `loyalty all` starts and how it stops),
//! [`tenants`], [`expiry`], [`books`] (positions and statements from the command line), [`conversations`] (the WhatsApp conversation processor), [`keys`] (rotating the personal-data keys), [`notifications`] (receipts and reminders queued for WhatsApp), [`broadcasts`] (the feeder of vendors' broadcasts), [`referrals`] (the referral process: the referrer's bonus), [`sandbox`] (the
//! WhatsApp sandbox's commands).

pub mod app;
pub mod audit;
pub mod books;
pub mod broadcasts;
pub mod conversations;
pub mod expiry;
pub mod keys;
pub mod notifications;
pub mod referrals;
pub mod sandbox;
pub mod settings;
pub mod tenants;
