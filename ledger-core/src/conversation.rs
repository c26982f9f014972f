//! The WhatsApp conversation: a pure state machine, one per (customer, business number).
//!
//! Reading order: [`step`] and the types it speaks ([`ConversationState`], [`Inbound`],
//! [`Context`], [`Step`], [`Effect`]); then [`keywords`] (how a message becomes a
//! request), [`render`] (the replies, pure functions of facts the shell looked up) and
//! [`message`] (outgoing messages within Meta's limits by construction).
//!
//! Architecture invariant: like the rest of the crate this module does no IO. Time is the
//! inbound message's `at`, ids come in the input, and everything that needs the ledger or
//! the tenant directory is an [`Effect`] the shell executes.
//!
//! # The machine
//!
//! The state is who the customer is talking to (the joined vendors and the current one),
//! where they are in the menu ([`MenuPosition`]), when they last wrote, and whether they
//! accept broadcasts. `step` first applies inactivity expiry (the menu position goes back
//! to `Idle` when more than `Context::inactivity_timeout` passed since the last message;
//! vendors and opt-in stay), then on a tenant's own number enrols a first-time customer,
//! then dispatches the request:
//!
//! ```text
//!                    ┌──────────────────────── no vendor yet (shared number) ─────────────────┐
//!                    │ JOIN <code> / <code> ──ResolveVendor──> shell ──VendorResolved──┐      │
//!                    │ anything else ──> "send your vendor's code"      found: join ───┼──┐   │
//!                    └─────────────────────────────────────────────────────────────────┘  │   │
//!                                                                                          v
//!   POINTS, HISTORY, HELP, MENU, VENDORS, vendor switch          ┌──────────────┐
//!   ─────────────────────────────────────────────────────────────>│     Idle     │<──────────┐
//!                                                                 └──────┬───────┘           │
//!                                  REWARDS / rewards:page:N / NEXT, BACK │                   │
//!                                                                        v                   │
//!                                                          ┌───────────────────────────┐     │
//!                                         NEXT, BACK ─────>│ BrowsingRewards { page }  │     │
//!                                                          └────────────┬──────────────┘     │
//!                             reward:<id> (from any state)              │                    │
//!                                                                       v                    │
//!                                                       ┌──────────────────────────────┐     │
//!          unknown text: ask again; confirm:<other> ───>│ ConfirmingReward { reward }  │─────┘
//!                                                       └──────────────────────────────┘
//!                                                 YES / confirm:<same> -> Redeem, Idle
//!                                                 NO / cancel          -> cancelled, Idle
//!
//!   In every state: STOP / START / user_preferences change broadcast opt-in only (menu
//!   position kept); a reaction is recorded as activity and answered by nothing; other
//!   unsupported messages get help; inactivity longer than the timeout -> Idle first.
//! ```
//!
//! The full table, one row per (state, input class), is in `conversation/tests.rs`; a test
//! there fails if a state or an input class is added without rows.
//!
//! # Decisions (and where they deviate from the first design)
//!
//! - **Vendor codes are resolved by a round trip, not by a resolver in the context.** A
//!   code (bare or after JOIN) yields [`Effect::ResolveVendor`]; the shell looks the code
//!   up (exactly, upper-case) and calls `step` again with [`Input::VendorResolved`],
//!   echoing the [`VendorQuery`]. Deciding whether a text *is* a code stays here, so the
//!   shell does not parse messages, and the shell looks up only what the machine asks for.
//!   The first step changes nothing but `last_activity_at`.
//! - **No `Join`/`SwitchVendor`/`ShowHelp` effects.** Joining is a state change plus
//!   [`Effect::EnrolCustomer`]; switching is a state change only; help, menu and the other
//!   replies that need no ledger facts are rendered here as [`Effect::Reply`]. Effects that
//!   need facts (`Show*`, `AskConfirmation`, `Redeem`) leave the rendering to the shell,
//!   which calls the renderer with what it just read or wrote (read-your-writes).
//! - **Names are kept in the state** ([`Vendor`]), so help and menus can name the vendor
//!   without a look-up; the own-number routing and the resolver supply them.
//! - **A confirm button redeems only from `ConfirmingReward` of that same reward.** Ids are
//!   replayable; an old or double-tapped Confirm asks for confirmation again instead of
//!   redeeming a second time.
//! - **At most [`VENDORS_MAX`] vendors per shared number**, so the vendor list fits in one
//!   WhatsApp list.
//! - **Digits do not pick list rows**: lists are tapped, and the machine does not know which
//!   rewards the shell showed.
//! - **Broadcast opt-in is one flag per (customer, business number)**: on the shared number
//!   STOP stops broadcasts from every vendor joined there, which is what the customer sees
//!   as "this number". Default is opted in: the joined/welcome message says so and how to
//!   STOP (an opt-in given in the WhatsApp thread, as Meta allows).
//! - **`Input::Preference`** (the `user_preferences` webhook) is not a message: it neither
//!   expires the menu nor counts as activity, and gets no reply (WhatsApp itself confirms).

pub mod keywords;
pub mod message;
pub mod render;

#[cfg(test)]
mod tests;

use crate::ids::TenantId;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

pub use keywords::Request;
pub use message::{Button, LimitError, OutgoingMessage, Row, Section};

/// Most vendors one customer may join on the shared number: the vendor list is one
/// WhatsApp list of at most 10 rows.
pub const VENDORS_MAX: usize = message::ROWS_MAX;
/// A sensible default for [`Context::inactivity_timeout`].
pub const INACTIVITY_TIMEOUT_DEFAULT_MINUTES: i64 = 30;
/// Longest vendor name kept in the state.
pub const VENDOR_NAME_CHARS_MAX: usize = 100;

/// A reward of a vendor's catalogue: the ledger's own id.
pub use crate::ids::RewardId;

/// A vendor's public code as a customer types it: 3 to 20 ASCII letters or digits, kept
/// upper-case, so `shopcode123` and `SHOPCODE123` are one code. The one definition: signup
/// and `loyalty tenant create` use it too (`schema::accounts` re-exports it), and the
/// `tenants.vendor_code` check says the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VendorCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 3 to 20 letters A-Z or digits 0-9")]
pub struct InvalidVendorCode;

impl VendorCode {
    pub fn parse(raw: &str) -> Result<Self, InvalidVendorCode> {
        let upper = raw.trim().to_ascii_uppercase();
        let valid = (3..=20).contains(&upper.len())
            && upper
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if valid {
            Ok(VendorCode(upper))
        } else {
            Err(InvalidVendorCode)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for VendorCode {
    type Error = InvalidVendorCode;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        VendorCode::parse(&value)
    }
}

impl From<VendorCode> for String {
    fn from(value: VendorCode) -> Self {
        value.0
    }
}

/// A vendor as the conversation knows it: the tenant and the name shown to customers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vendor {
    tenant: TenantId,
    name: String,
}

impl Vendor {
    /// The name is cut to [`VENDOR_NAME_CHARS_MAX`] characters, which bounds the state.
    pub fn new(tenant: TenantId, name: &str) -> Vendor {
        Vendor {
            tenant,
            name: name.trim().chars().take(VENDOR_NAME_CHARS_MAX).collect(),
        }
    }

    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Where the customer is in the menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "position", rename_all = "snake_case")]
pub enum MenuPosition {
    #[default]
    Idle,
    /// A page of the current vendor's rewards was shown (1-based).
    BrowsingRewards { page: u16 },
    /// The customer chose a reward and was asked to confirm.
    ConfirmingReward { reward: RewardId },
}

/// Whether the customer accepts broadcasts (offers, announcements) on this number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Broadcasts {
    #[default]
    OptedIn,
    OptedOut,
}

/// The conversation of one customer with one business number. The shell stores it as a
/// read model (it serializes with serde) keyed by (customer, business number).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConversationState {
    vendors: Vec<Vendor>,
    current: Option<TenantId>,
    menu: MenuPosition,
    last_activity_at: Option<DateTime<Utc>>,
    broadcasts: Broadcasts,
}

impl ConversationState {
    /// A customer who has never written to this number.
    pub fn new() -> Self {
        Self::default()
    }

    /// Vendors joined on this number, in the order joined. On a tenant's own number, that
    /// tenant once the customer has written.
    pub fn vendors(&self) -> &[Vendor] {
        &self.vendors
    }

    /// The vendor the customer is talking to.
    pub fn current(&self) -> Option<&Vendor> {
        let current = self.current?;
        self.vendors.iter().find(|v| v.tenant == current)
    }

    pub fn menu(&self) -> MenuPosition {
        self.menu
    }

    pub fn last_activity_at(&self) -> Option<DateTime<Utc>> {
        self.last_activity_at
    }

    pub fn broadcasts(&self) -> Broadcasts {
        self.broadcasts
    }

    fn is_joined(&self, tenant: TenantId) -> bool {
        self.vendors.iter().any(|v| v.tenant == tenant)
    }
}

/// The marketing preference a `user_preferences` webhook reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarketingPreference {
    /// `"value": "stop"`.
    OptOut,
    /// `"value": "resume"`.
    OptIn,
}

/// How a code reached the resolver: after `JOIN`, or as a bare word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeSource {
    Join,
    Bare,
}

/// A vendor code the machine asks the shell to resolve; echoed back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorQuery {
    pub code: VendorCode,
    pub source: CodeSource,
}

/// What arrived from the customer (or from the shell answering a [`VendorQuery`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// A `text` message's body.
    Text { body: String },
    /// An `interactive` `button_reply`.
    ButtonReply { id: String },
    /// An `interactive` `list_reply`.
    ListReply { id: String },
    /// A template quick-reply (`type: button`).
    QuickReply { payload: String },
    /// Any other message type (`image`, `location`, `reaction`, `unsupported`, …): the
    /// webhook's `type`.
    Unsupported { kind: String },
    /// The `user_preferences` webhook.
    Preference { marketing: MarketingPreference },
    /// The shell's answer to [`Effect::ResolveVendor`]: the vendor whose code is exactly
    /// `query.code`, or `None`.
    VendorResolved {
        query: VendorQuery,
        vendor: Option<Vendor>,
    },
}

/// An input at the time it was sent (the webhook's `timestamp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbound {
    pub at: DateTime<Utc>,
    pub input: Input,
}

/// How the business number the customer wrote to is routed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "routing", rename_all = "snake_case")]
pub enum Routing {
    /// The tenant's own number (`metadata.phone_number_id` maps to exactly this tenant).
    OwnNumber { vendor: Vendor },
    /// The platform's shared number: customers join vendors by code.
    SharedNumber,
}

/// Facts the shell supplies with every input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub routing: Routing,
    /// A menu position older than this goes back to `Idle`.
    pub inactivity_timeout: Duration,
}

/// What the shell must do, in order. Effects that need ledger facts name the tenant they
/// are about; the shell renders their reply with the matching `render_*` function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Look the code up (exact, upper-case) and call `step` with [`Input::VendorResolved`].
    ResolveVendor { query: VendorQuery },
    /// Enrol the customer at the tenant if not already enrolled (idempotent).
    EnrolCustomer { tenant: TenantId },
    /// Read the balance and expiry facts; reply with [`render::render_points`].
    ShowPoints { tenant: TenantId },
    /// Read the active catalogue and balance; reply with [`render::render_rewards`].
    ShowRewards { tenant: TenantId, page: u16 },
    /// Read the reward and balance; reply with [`render::render_confirmation`].
    AskConfirmation { tenant: TenantId, reward: RewardId },
    /// Redeem through the ledger (balance checked under the tenant lock, idempotent on the
    /// inbound message id); reply with [`render::render_redeemed`] of the outcome.
    Redeem { tenant: TenantId, reward: RewardId },
    /// Read the last transactions; reply with [`render::render_history`].
    ShowHistory { tenant: TenantId },
    /// Record the broadcast opt-in for every vendor joined on this number.
    SetBroadcastOptIn { opted_in: bool },
    /// Send this message as it is.
    Reply(OutgoingMessage),
}

/// The result of one step: the next state and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub state: ConversationState,
    pub effects: Vec<Effect>,
}

/// Decides what one inbound input does to a conversation. Pure and total: every input in
/// every state gives a state and effects, and every customer message other than a
/// reaction gets a reply (directly or through a `Show*`/`Redeem`/`AskConfirmation`
/// effect).
pub fn step(state: &ConversationState, inbound: &Inbound, context: &Context) -> Step {
    let mut next = state.clone();
    let mut effects = Vec::new();

    if let Input::Preference { marketing } = &inbound.input {
        let opted_in = *marketing == MarketingPreference::OptIn;
        set_broadcasts(&mut next, opted_in, &mut effects);
        return Step {
            state: next,
            effects,
        };
    }

    expire_and_touch(&mut next, inbound.at, context.inactivity_timeout);
    let first_contact = match &context.routing {
        Routing::OwnNumber { vendor } => enrol_on_own_number(&mut next, vendor, &mut effects),
        Routing::SharedNumber => false,
    };

    match &inbound.input {
        Input::Unsupported { kind } => {
            if kind != "reaction" {
                effects.push(Effect::Reply(render::render_unsupported(
                    next.current(),
                    &context.routing,
                )));
            }
        }
        Input::VendorResolved { query, vendor } => resolved(
            &mut next,
            &context.routing,
            query,
            vendor.as_ref(),
            &mut effects,
        ),
        Input::Text { body } => {
            let request = keywords::parse_text(body);
            dispatch(&mut next, request, context, first_contact, &mut effects)
        }
        Input::ButtonReply { id } | Input::ListReply { id } => {
            let request = keywords::parse_id(id);
            dispatch(&mut next, request, context, first_contact, &mut effects)
        }
        Input::QuickReply { payload } => {
            let request = keywords::parse_id(payload);
            dispatch(&mut next, request, context, first_contact, &mut effects)
        }
        Input::Preference { .. } => unreachable!("handled above"),
    }
    Step {
        state: next,
        effects,
    }
}

/// Inactivity expiry, then the activity clock. Webhooks arrive out of order, so an older
/// message neither expires nor moves the clock back.
fn expire_and_touch(state: &mut ConversationState, at: DateTime<Utc>, timeout: Duration) {
    if let Some(last) = state.last_activity_at {
        if at > last && at - last > timeout {
            state.menu = MenuPosition::Idle;
        }
    }
    state.last_activity_at = Some(state.last_activity_at.map_or(at, |last| last.max(at)));
}

/// On a tenant's own number the first message enrols. Returns whether this was the first
/// contact.
fn enrol_on_own_number(
    state: &mut ConversationState,
    vendor: &Vendor,
    effects: &mut Vec<Effect>,
) -> bool {
    let member = state.current == Some(vendor.tenant) && state.is_joined(vendor.tenant);
    // The routing is the truth about whose number this is; refresh the name it carries.
    state.vendors = vec![vendor.clone()];
    state.current = Some(vendor.tenant);
    if member {
        return false;
    }
    state.menu = MenuPosition::Idle;
    effects.push(Effect::EnrolCustomer {
        tenant: vendor.tenant,
    });
    true
}

fn set_broadcasts(state: &mut ConversationState, opted_in: bool, effects: &mut Vec<Effect>) {
    let wanted = if opted_in {
        Broadcasts::OptedIn
    } else {
        Broadcasts::OptedOut
    };
    if state.broadcasts != wanted {
        state.broadcasts = wanted;
        effects.push(Effect::SetBroadcastOptIn { opted_in });
    }
}

fn dispatch(
    state: &mut ConversationState,
    request: Request,
    context: &Context,
    first_contact: bool,
    effects: &mut Vec<Effect>,
) {
    let shared = context.routing == Routing::SharedNumber;
    match request {
        Request::Stop => {
            set_broadcasts(state, false, effects);
            effects.push(Effect::Reply(render::render_opted_out()));
            return;
        }
        Request::Start => {
            set_broadcasts(state, true, effects);
            effects.push(Effect::Reply(render::render_opted_in()));
            return;
        }
        Request::Join(code) if shared => {
            match code {
                Some(code) => effects.push(Effect::ResolveVendor {
                    query: VendorQuery {
                        code,
                        source: CodeSource::Join,
                    },
                }),
                None => effects.push(Effect::Reply(render::render_join_instructions())),
            }
            return;
        }
        Request::BareCode(code) if shared => {
            effects.push(Effect::ResolveVendor {
                query: VendorQuery {
                    code,
                    source: CodeSource::Bare,
                },
            });
            return;
        }
        Request::ChooseVendor(tenant) if shared => {
            if state.is_joined(tenant) {
                switch_to(state, tenant, effects);
            } else if let Some(current) = state.current() {
                // A replayed or forged id never reaches a tenant the customer has not joined.
                effects.push(Effect::Reply(render::render_vendors(
                    &state.vendors,
                    current.tenant,
                )));
            } else {
                effects.push(Effect::Reply(render::render_need_vendor()));
            }
            return;
        }
        _ => {}
    }

    let Some(vendor) = state.current().cloned() else {
        // Only the shared number has customers without a vendor.
        effects.push(Effect::Reply(render::render_need_vendor()));
        return;
    };
    let tenant = vendor.tenant;
    let reply = |message| Effect::Reply(message);
    match request {
        Request::Points => {
            state.menu = MenuPosition::Idle;
            effects.push(Effect::ShowPoints { tenant });
        }
        Request::History => {
            state.menu = MenuPosition::Idle;
            effects.push(Effect::ShowHistory { tenant });
        }
        Request::Rewards => show_rewards(state, tenant, 1, effects),
        Request::RewardsPage(page) => show_rewards(state, tenant, page, effects),
        Request::Next => match state.menu {
            MenuPosition::BrowsingRewards { page } => {
                let page = page.saturating_add(1).min(keywords::PAGE_MAX);
                show_rewards(state, tenant, page, effects)
            }
            _ => unknown(state, &vendor, context, first_contact, effects),
        },
        Request::Previous => match state.menu {
            MenuPosition::BrowsingRewards { page } => {
                show_rewards(state, tenant, page.saturating_sub(1).max(1), effects)
            }
            _ => unknown(state, &vendor, context, first_contact, effects),
        },
        Request::ChooseReward(reward) => ask_confirmation(state, tenant, reward, effects),
        Request::ConfirmReward(reward) => {
            if state.menu == (MenuPosition::ConfirmingReward { reward }) {
                redeem(state, tenant, reward, effects)
            } else {
                ask_confirmation(state, tenant, reward, effects)
            }
        }
        Request::Yes => match state.menu {
            MenuPosition::ConfirmingReward { reward } => redeem(state, tenant, reward, effects),
            _ => {
                state.menu = MenuPosition::Idle;
                effects.push(reply(render::render_nothing_pending(&vendor)));
            }
        },
        Request::No => {
            let was_confirming = matches!(state.menu, MenuPosition::ConfirmingReward { .. });
            state.menu = MenuPosition::Idle;
            effects.push(reply(if was_confirming {
                render::render_cancelled(&vendor)
            } else {
                render::render_nothing_pending(&vendor)
            }));
        }
        Request::Menu | Request::Help if first_contact => {
            effects.push(reply(render::render_joined(&vendor)));
        }
        Request::Menu => {
            state.menu = MenuPosition::Idle;
            effects.push(reply(render::render_menu(
                &vendor,
                state.broadcasts,
                shared && state.vendors.len() > 1,
            )));
        }
        Request::Help => {
            state.menu = MenuPosition::Idle;
            effects.push(reply(render::render_help(&vendor, &context.routing)));
        }
        Request::Vendors if shared => {
            state.menu = MenuPosition::Idle;
            effects.push(reply(render::render_vendors(&state.vendors, tenant)));
        }
        Request::Vendors
        | Request::Join(_)
        | Request::BareCode(_)
        | Request::ChooseVendor(_)
        | Request::Unknown => unknown(state, &vendor, context, first_contact, effects),
        Request::Stop | Request::Start => unreachable!("handled above"),
    }
}

/// Input the machine does not understand here. While a confirmation is pending it asks
/// again (a typo should not lose the choice); otherwise it answers with help.
fn unknown(
    state: &mut ConversationState,
    vendor: &Vendor,
    context: &Context,
    first_contact: bool,
    effects: &mut Vec<Effect>,
) {
    if let MenuPosition::ConfirmingReward { reward } = state.menu {
        effects.push(Effect::AskConfirmation {
            tenant: vendor.tenant,
            reward,
        });
    } else if first_contact {
        effects.push(Effect::Reply(render::render_joined(vendor)));
    } else {
        effects.push(Effect::Reply(render::render_unknown(
            vendor,
            &context.routing,
        )));
    }
}

fn show_rewards(
    state: &mut ConversationState,
    tenant: TenantId,
    page: u16,
    effects: &mut Vec<Effect>,
) {
    state.menu = MenuPosition::BrowsingRewards { page };
    effects.push(Effect::ShowRewards { tenant, page });
}

fn ask_confirmation(
    state: &mut ConversationState,
    tenant: TenantId,
    reward: RewardId,
    effects: &mut Vec<Effect>,
) {
    state.menu = MenuPosition::ConfirmingReward { reward };
    effects.push(Effect::AskConfirmation { tenant, reward });
}

fn redeem(
    state: &mut ConversationState,
    tenant: TenantId,
    reward: RewardId,
    effects: &mut Vec<Effect>,
) {
    state.menu = MenuPosition::Idle;
    effects.push(Effect::Redeem { tenant, reward });
}

fn switch_to(state: &mut ConversationState, tenant: TenantId, effects: &mut Vec<Effect>) {
    state.current = Some(tenant);
    state.menu = MenuPosition::Idle;
    if let Some(vendor) = state.current() {
        effects.push(Effect::Reply(render::render_switched(vendor)));
    }
}

/// The shell's answer to a vendor query.
fn resolved(
    state: &mut ConversationState,
    routing: &Routing,
    query: &VendorQuery,
    vendor: Option<&Vendor>,
    effects: &mut Vec<Effect>,
) {
    if *routing != Routing::SharedNumber {
        // Never asked for on an own number: a shell bug, and no tenant may be reached by it.
        return;
    }
    let Some(vendor) = vendor else {
        effects.push(Effect::Reply(render::render_unknown_vendor(
            &query.code,
            state.current(),
        )));
        return;
    };
    if state.is_joined(vendor.tenant) {
        // Keep the name the directory has now.
        for joined in state
            .vendors
            .iter_mut()
            .filter(|v| v.tenant == vendor.tenant)
        {
            *joined = vendor.clone();
        }
        switch_to(state, vendor.tenant, effects);
        return;
    }
    if state.vendors.len() >= VENDORS_MAX {
        effects.push(Effect::Reply(render::render_too_many_vendors(
            vendor,
            &state.vendors,
        )));
        return;
    }
    state.vendors.push(vendor.clone());
    state.current = Some(vendor.tenant);
    state.menu = MenuPosition::Idle;
    effects.push(Effect::EnrolCustomer {
        tenant: vendor.tenant,
    });
    effects.push(Effect::Reply(render::render_joined(vendor)));
}
