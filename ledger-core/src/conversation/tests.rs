//! The transition table of [`step`], one row per (state class, input class).
//!
//! A *state class* is a kind of conversation (shared number with no vendor, shared number
//! with vendors, own number at first contact, own number member) times a [`MenuPosition`];
//! an *input class* is what [`classify`] makes of an input (the [`Request`] it parses to, or
//! the kind of non-text input). `every_state_and_input_class_has_exactly_one_row` enumerates
//! both and fails if any pair has no row or two rows; [`classify`] and [`menu_class`] match
//! exhaustively, so a new request, input or menu position does not compile until it is
//! classified, and then fails that test until it has rows.
//!
//! Each row's representative input is stepped from a fixture state of every class the row
//! names, at [`at`] (five minutes after the fixture's last activity, within the timeout),
//! and the resulting state and effects must equal the row's. Cases that need other
//! fixtures (expiry, opted-out customers, paging at the ends, stale ids, limits) follow in
//! `specific_cases`.

use super::render::*;
use super::*;
use chrono::TimeZone;
use uuid::Uuid;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn minutes(n: i64) -> Duration {
    Duration::minutes(n)
}

fn tenant(n: u128) -> TenantId {
    TenantId::from_uuid(Uuid::from_u128(n))
}

fn a() -> Vendor {
    Vendor::new(tenant(1), "Mama Put")
}

fn b() -> Vendor {
    Vendor::new(tenant(2), "Kings Salon")
}

fn c() -> Vendor {
    Vendor::new(tenant(3), "Chicken Republic")
}

fn r1() -> RewardId {
    RewardId::from_uuid(Uuid::from_u128(0x11))
}

fn r2() -> RewardId {
    RewardId::from_uuid(Uuid::from_u128(0x22))
}

fn shop1() -> VendorCode {
    VendorCode::parse("SHOP1").unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Menu {
    Idle,
    Browsing,
    Confirming,
}

/// Exhaustive, so a new menu position must be given a class (and then rows).
fn menu_class(position: MenuPosition) -> Menu {
    match position {
        MenuPosition::Idle => Menu::Idle,
        MenuPosition::BrowsingRewards { .. } => Menu::Browsing,
        MenuPosition::ConfirmingReward { .. } => Menu::Confirming,
    }
}

/// The fixture position of each class: page 2, or confirming R1.
fn menu_fixture(menu: Menu) -> MenuPosition {
    match menu {
        Menu::Idle => MenuPosition::Idle,
        Menu::Browsing => MenuPosition::BrowsingRewards { page: 2 },
        Menu::Confirming => MenuPosition::ConfirmingReward { reward: r1() },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum S {
    /// Shared number, no vendor joined (menu is necessarily Idle).
    SharedNoVendor,
    /// Shared number, joined A and B, talking to A.
    Shared(Menu),
    /// A's own number, never written before.
    OwnFirst,
    /// A's own number, a member.
    Own(Menu),
}

use Menu::{Browsing, Confirming, Idle};
use S::{Own, OwnFirst, Shared, SharedNoVendor};

const ALL_STATES: &[S] = &[
    SharedNoVendor,
    Shared(Idle),
    Shared(Browsing),
    Shared(Confirming),
    OwnFirst,
    Own(Idle),
    Own(Browsing),
    Own(Confirming),
];
const SHARED_WITH: &[S] = &[Shared(Idle), Shared(Browsing), Shared(Confirming)];
const SHARED_ALL: &[S] = &[
    SharedNoVendor,
    Shared(Idle),
    Shared(Browsing),
    Shared(Confirming),
];
const OWN_MEMBER: &[S] = &[Own(Idle), Own(Browsing), Own(Confirming)];
const WITH_VENDOR: &[S] = &[
    Shared(Idle),
    Shared(Browsing),
    Shared(Confirming),
    Own(Idle),
    Own(Browsing),
    Own(Confirming),
];
const NOT_CONFIRMING: &[S] = &[Shared(Idle), Shared(Browsing), Own(Idle), Own(Browsing)];
const CONFIRMING: &[S] = &[Shared(Confirming), Own(Confirming)];
const BROWSING: &[S] = &[Shared(Browsing), Own(Browsing)];
const NO_VENDOR: &[S] = &[SharedNoVendor];
const FIRST: &[S] = &[OwnFirst];

impl S {
    fn state(self) -> ConversationState {
        let (vendors, current, menu) = match self {
            SharedNoVendor | OwnFirst => (vec![], None, Idle),
            Shared(menu) => (vec![a(), b()], Some(tenant(1)), menu),
            Own(menu) => (vec![a()], Some(tenant(1)), menu),
        };
        ConversationState {
            vendors,
            current,
            menu: menu_fixture(menu),
            last_activity_at: match self {
                OwnFirst => None,
                _ => Some(at() - minutes(5)),
            },
            broadcasts: Broadcasts::OptedIn,
        }
    }

    fn context(self) -> Context {
        let routing = match self {
            SharedNoVendor | Shared(_) => Routing::SharedNumber,
            OwnFirst | Own(_) => Routing::OwnNumber { vendor: a() },
        };
        Context {
            routing,
            inactivity_timeout: minutes(INACTIVITY_TIMEOUT_DEFAULT_MINUTES),
        }
    }

    fn class_of(state: &ConversationState, context: &Context) -> S {
        let menu = menu_class(state.menu);
        match (&context.routing, state.current.is_some()) {
            (Routing::SharedNumber, false) => SharedNoVendor,
            (Routing::SharedNumber, true) => Shared(menu),
            (Routing::OwnNumber { .. }, false) => OwnFirst,
            (Routing::OwnNumber { .. }, true) => Own(menu),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputClass {
    Points,
    Rewards,
    RewardsPage,
    ChooseReward,
    ConfirmReward,
    Yes,
    No,
    Next,
    Previous,
    History,
    Help,
    Menu,
    Vendors,
    ChooseVendor,
    JoinWithCode,
    JoinWithoutCode,
    BareCode,
    Stop,
    Start,
    Unknown,
    Unsupported,
    Reaction,
    Preference,
    VendorFound,
    VendorNotFound,
}

const ALL_INPUT_CLASSES: &[InputClass] = {
    use InputClass::*;
    &[
        Points,
        Rewards,
        RewardsPage,
        ChooseReward,
        ConfirmReward,
        Yes,
        No,
        Next,
        Previous,
        History,
        Help,
        Menu,
        Vendors,
        ChooseVendor,
        JoinWithCode,
        JoinWithoutCode,
        BareCode,
        Stop,
        Start,
        Unknown,
        Unsupported,
        Reaction,
        Preference,
        VendorFound,
        VendorNotFound,
    ]
};

/// Exhaustive over inputs and requests.
fn classify(input: &Input) -> InputClass {
    let request = match input {
        Input::Text { body } => keywords::parse_text(body),
        Input::ButtonReply { id } | Input::ListReply { id } => keywords::parse_id(id),
        Input::QuickReply { payload } => keywords::parse_id(payload),
        Input::Unsupported { kind } if kind == "reaction" => return InputClass::Reaction,
        Input::Unsupported { .. } => return InputClass::Unsupported,
        Input::Preference { .. } => return InputClass::Preference,
        Input::VendorResolved {
            vendor: Some(_), ..
        } => return InputClass::VendorFound,
        Input::VendorResolved { vendor: None, .. } => return InputClass::VendorNotFound,
    };
    match request {
        Request::Points => InputClass::Points,
        Request::Rewards => InputClass::Rewards,
        Request::RewardsPage(_) => InputClass::RewardsPage,
        Request::ChooseReward(_) => InputClass::ChooseReward,
        Request::ConfirmReward(_) => InputClass::ConfirmReward,
        Request::Yes => InputClass::Yes,
        Request::No => InputClass::No,
        Request::Next => InputClass::Next,
        Request::Previous => InputClass::Previous,
        Request::History => InputClass::History,
        Request::Help => InputClass::Help,
        Request::Menu => InputClass::Menu,
        Request::Vendors => InputClass::Vendors,
        Request::ChooseVendor(_) => InputClass::ChooseVendor,
        Request::Join(Some(_)) => InputClass::JoinWithCode,
        Request::Join(None) => InputClass::JoinWithoutCode,
        Request::BareCode(_) => InputClass::BareCode,
        Request::Stop => InputClass::Stop,
        Request::Start => InputClass::Start,
        Request::Unknown => InputClass::Unknown,
    }
}

fn text(body: &str) -> Input {
    Input::Text { body: body.into() }
}

fn button(id: &str) -> Input {
    Input::ButtonReply { id: id.into() }
}

fn list(id: &str) -> Input {
    Input::ListReply { id: id.into() }
}

fn resolved(code: &VendorCode, source: CodeSource, vendor: Option<Vendor>) -> Input {
    Input::VendorResolved {
        query: VendorQuery {
            code: code.clone(),
            source,
        },
        vendor,
    }
}

/// What a row does to the menu position.
#[derive(Debug, Clone, Copy)]
enum After {
    Keep,
    To(MenuPosition),
}

/// What a row does to the rest of the state.
#[derive(Debug, Clone)]
enum Change {
    Nothing,
    OptedOut,
    Join(Vendor),
    SwitchTo(TenantId),
}

struct Row {
    states: &'static [S],
    input: Input,
    menu: After,
    change: Change,
    effects: Vec<Effect>,
}

fn row(states: &'static [S], input: Input, menu: After, effects: Vec<Effect>) -> Row {
    Row {
        states,
        input,
        menu,
        change: Change::Nothing,
        effects,
    }
}

impl Row {
    fn change(mut self, change: Change) -> Row {
        self.change = change;
        self
    }

    /// The state the row expects from the fixture of `class`.
    fn expected_state(&self, class: S) -> ConversationState {
        let mut state = class.state();
        if classify(&self.input) != InputClass::Preference {
            state.last_activity_at = Some(at());
            if class == OwnFirst {
                state.vendors = vec![a()];
                state.current = Some(tenant(1));
            }
        }
        if let After::To(position) = self.menu {
            state.menu = position;
        }
        match &self.change {
            Change::Nothing => {}
            Change::OptedOut => state.broadcasts = Broadcasts::OptedOut,
            Change::Join(vendor) => {
                state.vendors.push(vendor.clone());
                state.current = Some(vendor.tenant);
            }
            Change::SwitchTo(tenant) => state.current = Some(*tenant),
        }
        state
    }
}

fn reply(message: OutgoingMessage) -> Effect {
    Effect::Reply(message)
}

fn enrol_a() -> Effect {
    Effect::EnrolCustomer { tenant: tenant(1) }
}

fn shared() -> Routing {
    Routing::SharedNumber
}

fn own() -> Routing {
    Routing::OwnNumber { vendor: a() }
}

const IDLE: After = After::To(MenuPosition::Idle);
const KEEP: After = After::Keep;

/// Rows for an input that the machine does not understand in a state with a vendor: help,
/// or the confirmation asked again; on a first contact, the welcome.
fn not_understood_rows(input: Input) -> Vec<Row> {
    vec![
        row(
            &[Shared(Idle), Shared(Browsing)],
            input.clone(),
            KEEP,
            vec![reply(render_unknown(&a(), &shared()))],
        ),
        row(
            &[Own(Idle), Own(Browsing)],
            input.clone(),
            KEEP,
            vec![reply(render_unknown(&a(), &own()))],
        ),
        row(
            CONFIRMING,
            input.clone(),
            KEEP,
            vec![Effect::AskConfirmation {
                tenant: tenant(1),
                reward: r1(),
            }],
        ),
        row(
            FIRST,
            input,
            KEEP,
            vec![enrol_a(), reply(render_joined(&a()))],
        ),
    ]
}

/// A request that needs a vendor: the `effects` (and menu) with one, instructions without,
/// enrolment first on a first contact.
fn vendor_rows(input: Input, menu: After, effects: Vec<Effect>) -> Vec<Row> {
    let mut first = vec![enrol_a()];
    first.extend(effects.clone());
    vec![
        row(WITH_VENDOR, input.clone(), menu, effects),
        row(
            NO_VENDOR,
            input.clone(),
            KEEP,
            vec![reply(render_need_vendor())],
        ),
        row(FIRST, input, menu, first),
    ]
}

fn table() -> Vec<Row> {
    let show_rewards = |page| Effect::ShowRewards {
        tenant: tenant(1),
        page,
    };
    let browsing = |page| After::To(MenuPosition::BrowsingRewards { page });
    let ask = |reward| Effect::AskConfirmation {
        tenant: tenant(1),
        reward,
    };
    let redeem_r1 = Effect::Redeem {
        tenant: tenant(1),
        reward: r1(),
    };
    let need_vendor = || reply(render_need_vendor());
    let mut rows = Vec::new();

    // POINTS, REWARDS, a rewards page, a reward, HISTORY: the same from every menu position.
    rows.extend(vendor_rows(
        text("points"),
        IDLE,
        vec![Effect::ShowPoints { tenant: tenant(1) }],
    ));
    rows.extend(vendor_rows(
        text("rewards"),
        browsing(1),
        vec![show_rewards(1)],
    ));
    rows.extend(vendor_rows(
        list("rewards:page:3"),
        browsing(3),
        vec![show_rewards(3)],
    ));
    rows.extend(vendor_rows(
        list(&format!("reward:{}", r2())),
        After::To(MenuPosition::ConfirmingReward { reward: r2() }),
        vec![ask(r2())],
    ));
    rows.extend(vendor_rows(
        text("history"),
        IDLE,
        vec![Effect::ShowHistory { tenant: tenant(1) }],
    ));

    // Confirm button for R1: redeems only while confirming R1; elsewhere asks first (a
    // replayed or double-tapped button never redeems twice).
    let confirm_r1 = button(&format!("confirm:{}", r1()));
    rows.push(row(
        CONFIRMING,
        confirm_r1.clone(),
        IDLE,
        vec![redeem_r1.clone()],
    ));
    rows.push(row(
        NOT_CONFIRMING,
        confirm_r1.clone(),
        After::To(MenuPosition::ConfirmingReward { reward: r1() }),
        vec![ask(r1())],
    ));
    rows.push(row(
        NO_VENDOR,
        confirm_r1.clone(),
        KEEP,
        vec![need_vendor()],
    ));
    rows.push(row(
        FIRST,
        confirm_r1,
        After::To(MenuPosition::ConfirmingReward { reward: r1() }),
        vec![enrol_a(), ask(r1())],
    ));

    // YES / NO (and the Cancel button).
    rows.push(row(CONFIRMING, text("yes"), IDLE, vec![redeem_r1]));
    rows.push(row(
        NOT_CONFIRMING,
        text("yes"),
        IDLE,
        vec![reply(render_nothing_pending(&a()))],
    ));
    rows.push(row(NO_VENDOR, text("yes"), KEEP, vec![need_vendor()]));
    rows.push(row(
        FIRST,
        text("yes"),
        IDLE,
        vec![enrol_a(), reply(render_nothing_pending(&a()))],
    ));
    rows.push(row(
        CONFIRMING,
        button("cancel"),
        IDLE,
        vec![reply(render_cancelled(&a()))],
    ));
    rows.push(row(
        NOT_CONFIRMING,
        button("cancel"),
        IDLE,
        vec![reply(render_nothing_pending(&a()))],
    ));
    rows.push(row(NO_VENDOR, button("cancel"), KEEP, vec![need_vendor()]));
    rows.push(row(
        FIRST,
        button("cancel"),
        IDLE,
        vec![enrol_a(), reply(render_nothing_pending(&a()))],
    ));

    // NEXT / BACK page through rewards while browsing (fixture page 2); elsewhere they are
    // not understood.
    rows.push(row(
        BROWSING,
        text("next"),
        browsing(3),
        vec![show_rewards(3)],
    ));
    rows.push(row(
        BROWSING,
        text("back"),
        browsing(1),
        vec![show_rewards(1)],
    ));
    for word in ["next", "back"] {
        rows.extend(
            not_understood_rows(text(word))
                .into_iter()
                .filter(|r| r.states != BROWSING)
                .map(|mut r| {
                    r.states = match r.states {
                        [Shared(Idle), Shared(Browsing)] => &[Shared(Idle)],
                        [Own(Idle), Own(Browsing)] => &[Own(Idle)],
                        other => other,
                    };
                    r
                }),
        );
        rows.push(row(NO_VENDOR, text(word), KEEP, vec![need_vendor()]));
    }

    // HELP and MENU.
    rows.push(row(
        SHARED_WITH,
        text("help"),
        IDLE,
        vec![reply(render_help(&a(), &shared()))],
    ));
    rows.push(row(
        OWN_MEMBER,
        text("help"),
        IDLE,
        vec![reply(render_help(&a(), &own()))],
    ));
    rows.push(row(NO_VENDOR, text("help"), KEEP, vec![need_vendor()]));
    rows.push(row(
        FIRST,
        text("help"),
        KEEP,
        vec![enrol_a(), reply(render_joined(&a()))],
    ));
    rows.push(row(
        SHARED_WITH,
        text("hi"),
        IDLE,
        vec![reply(render_menu(&a(), Broadcasts::OptedIn, true))],
    ));
    rows.push(row(
        OWN_MEMBER,
        text("hi"),
        IDLE,
        vec![reply(render_menu(&a(), Broadcasts::OptedIn, false))],
    ));
    rows.push(row(NO_VENDOR, text("hi"), KEEP, vec![need_vendor()]));
    rows.push(row(
        FIRST,
        text("hi"),
        KEEP,
        vec![enrol_a(), reply(render_joined(&a()))],
    ));

    // Vendors: listing and switching exist on the shared number only.
    rows.push(row(
        SHARED_WITH,
        text("vendors"),
        IDLE,
        vec![reply(render_vendors(&[a(), b()], tenant(1)))],
    ));
    rows.push(row(NO_VENDOR, text("vendors"), KEEP, vec![need_vendor()]));
    rows.extend(own_not_understood(text("vendors")));
    let choose_b = list(&format!("vendor:{}", tenant(2)));
    rows.push(
        row(
            SHARED_WITH,
            choose_b.clone(),
            IDLE,
            vec![reply(render_switched(&b()))],
        )
        .change(Change::SwitchTo(tenant(2))),
    );
    rows.push(row(NO_VENDOR, choose_b.clone(), KEEP, vec![need_vendor()]));
    rows.extend(own_not_understood(choose_b));

    // Vendor codes: resolved on the shared number only, never on an own number.
    let resolve = |source| Effect::ResolveVendor {
        query: VendorQuery {
            code: shop1(),
            source,
        },
    };
    rows.push(row(
        SHARED_ALL,
        text("join shop1"),
        KEEP,
        vec![resolve(CodeSource::Join)],
    ));
    rows.extend(own_not_understood(text("join shop1")));
    rows.push(row(
        SHARED_ALL,
        text("join"),
        KEEP,
        vec![reply(render_join_instructions())],
    ));
    rows.extend(own_not_understood(text("join")));
    rows.push(row(
        SHARED_ALL,
        text("shop1"),
        KEEP,
        vec![resolve(CodeSource::Bare)],
    ));
    rows.extend(own_not_understood(text("shop1")));
    rows.push(
        row(
            SHARED_ALL,
            resolved(&shop1(), CodeSource::Bare, Some(c())),
            IDLE,
            vec![
                Effect::EnrolCustomer { tenant: tenant(3) },
                reply(render_joined(&c())),
            ],
        )
        .change(Change::Join(c())),
    );
    rows.push(row(
        OWN_MEMBER,
        resolved(&shop1(), CodeSource::Bare, Some(c())),
        KEEP,
        vec![],
    ));
    rows.push(row(
        FIRST,
        resolved(&shop1(), CodeSource::Bare, Some(c())),
        KEEP,
        vec![enrol_a()],
    ));
    rows.push(row(
        SHARED_WITH,
        resolved(&shop1(), CodeSource::Join, None),
        KEEP,
        vec![reply(render_unknown_vendor(&shop1(), Some(&a())))],
    ));
    rows.push(row(
        NO_VENDOR,
        resolved(&shop1(), CodeSource::Join, None),
        KEEP,
        vec![reply(render_unknown_vendor(&shop1(), None))],
    ));
    rows.push(row(
        OWN_MEMBER,
        resolved(&shop1(), CodeSource::Join, None),
        KEEP,
        vec![],
    ));
    rows.push(row(
        FIRST,
        resolved(&shop1(), CodeSource::Join, None),
        KEEP,
        vec![enrol_a()],
    ));

    // STOP / START / the preference webhook: opt-in only, the menu position is kept. The
    // fixtures are opted in, so START and resume change nothing but still answer START.
    let opted_out = vec![
        Effect::SetBroadcastOptIn { opted_in: false },
        reply(render_opted_out()),
    ];
    rows.push(
        row(ALL_STATES_BUT_FIRST, text("stop"), KEEP, opted_out.clone()).change(Change::OptedOut),
    );
    let mut first = vec![enrol_a()];
    first.extend(opted_out);
    rows.push(row(FIRST, text("stop"), KEEP, first).change(Change::OptedOut));
    rows.push(row(
        ALL_STATES_BUT_FIRST,
        text("start"),
        KEEP,
        vec![reply(render_opted_in())],
    ));
    rows.push(row(
        FIRST,
        text("start"),
        KEEP,
        vec![enrol_a(), reply(render_opted_in())],
    ));
    rows.push(
        row(
            ALL_STATES,
            Input::Preference {
                marketing: MarketingPreference::OptOut,
            },
            KEEP,
            vec![Effect::SetBroadcastOptIn { opted_in: false }],
        )
        .change(Change::OptedOut),
    );

    // Text that is nothing we know.
    rows.extend(not_understood_rows(text("blah blah")));
    rows.push(row(NO_VENDOR, text("blah blah"), KEEP, vec![need_vendor()]));

    // Media and other message types: help; a reaction: nothing.
    let image = Input::Unsupported {
        kind: "image".into(),
    };
    rows.push(row(
        SHARED_WITH,
        image.clone(),
        KEEP,
        vec![reply(render_unsupported(Some(&a()), &shared()))],
    ));
    rows.push(row(
        OWN_MEMBER,
        image.clone(),
        KEEP,
        vec![reply(render_unsupported(Some(&a()), &own()))],
    ));
    rows.push(row(
        NO_VENDOR,
        image.clone(),
        KEEP,
        vec![reply(render_unsupported(None, &shared()))],
    ));
    rows.push(row(
        FIRST,
        image,
        KEEP,
        vec![enrol_a(), reply(render_unsupported(Some(&a()), &own()))],
    ));
    let reaction = Input::Unsupported {
        kind: "reaction".into(),
    };
    rows.push(row(ALL_STATES_BUT_FIRST, reaction.clone(), KEEP, vec![]));
    rows.push(row(FIRST, reaction, KEEP, vec![enrol_a()]));

    rows
}

const ALL_STATES_BUT_FIRST: &[S] = &[
    SharedNoVendor,
    Shared(Idle),
    Shared(Browsing),
    Shared(Confirming),
    Own(Idle),
    Own(Browsing),
    Own(Confirming),
];

/// A shared-number-only request on an own number: not understood there.
fn own_not_understood(input: Input) -> Vec<Row> {
    vec![
        row(
            &[Own(Idle), Own(Browsing)],
            input.clone(),
            KEEP,
            vec![reply(render_unknown(&a(), &own()))],
        ),
        row(
            &[Own(Confirming)],
            input.clone(),
            KEEP,
            vec![Effect::AskConfirmation {
                tenant: tenant(1),
                reward: r1(),
            }],
        ),
        row(
            FIRST,
            input,
            KEEP,
            vec![enrol_a(), reply(render_joined(&a()))],
        ),
    ]
}

#[test]
fn every_state_and_input_class_has_exactly_one_row() {
    let rows = table();
    let mut missing = Vec::new();
    for &state in ALL_STATES {
        for &class in ALL_INPUT_CLASSES {
            let count = rows
                .iter()
                .filter(|r| r.states.contains(&state) && classify(&r.input) == class)
                .count();
            if count != 1 {
                missing.push(format!("{state:?} × {class:?}: {count} rows"));
            }
        }
    }
    assert!(missing.is_empty(), "\n{}", missing.join("\n"));
    // Each fixture is of the class it stands for.
    for &state in ALL_STATES {
        assert_eq!(S::class_of(&state.state(), &state.context()), state);
    }
    // The menu classes cover every position.
    for menu in [Idle, Browsing, Confirming] {
        assert_eq!(menu_class(menu_fixture(menu)), menu);
    }
}

#[test]
fn every_transition_of_the_table() {
    let rows = table();
    let mut checked = 0;
    for row in &rows {
        for &class in row.states {
            let inbound = Inbound {
                at: at(),
                input: row.input.clone(),
            };
            let stepped = step(&class.state(), &inbound, &class.context());
            let what = format!("{class:?} × {:?}", row.input);
            assert_eq!(stepped.effects, row.effects, "effects of {what}");
            assert_eq!(stepped.state, row.expected_state(class), "state of {what}");
            checked += 1;
        }
    }
    assert_eq!(checked, ALL_STATES.len() * ALL_INPUT_CLASSES.len());
}

/// Cases outside the fixtures: (name, state, context, input at, input, expected state,
/// expected effects).
struct Case {
    name: &'static str,
    state: ConversationState,
    context: Context,
    at: DateTime<Utc>,
    input: Input,
    expect_state: ConversationState,
    expect_effects: Vec<Effect>,
}

fn with(class: S, edit: impl FnOnce(&mut ConversationState)) -> ConversationState {
    let mut state = class.state();
    edit(&mut state);
    state
}

fn specific_cases() -> Vec<Case> {
    let ctx_shared = Shared(Idle).context();
    let ctx_own = Own(Idle).context();
    let ask = |reward| Effect::AskConfirmation {
        tenant: tenant(1),
        reward,
    };
    let touched = |mut state: ConversationState| {
        state.last_activity_at = Some(at());
        state
    };
    let ten_vendors: Vec<Vendor> = (10..20)
        .map(|i| Vendor::new(tenant(i), &format!("Shop {i}")))
        .collect();
    vec![
        Case {
            name: "a pending confirmation expires after the inactivity timeout",
            state: with(Shared(Confirming), |s| {
                s.last_activity_at = Some(at() - minutes(31))
            }),
            context: ctx_shared.clone(),
            at: at(),
            input: text("yes"),
            expect_state: with(Shared(Idle), |s| s.last_activity_at = Some(at())),
            expect_effects: vec![reply(render_nothing_pending(&a()))],
        },
        Case {
            name: "exactly at the timeout the confirmation still stands",
            state: with(Shared(Confirming), |s| {
                s.last_activity_at = Some(at() - minutes(30))
            }),
            context: ctx_shared.clone(),
            at: at(),
            input: text("yes"),
            expect_state: with(Shared(Idle), |s| s.last_activity_at = Some(at())),
            expect_effects: vec![Effect::Redeem {
                tenant: tenant(1),
                reward: r1(),
            }],
        },
        Case {
            name: "expiry keeps the joined vendors, the current one and the opt-out",
            state: with(Shared(Browsing), |s| {
                s.last_activity_at = Some(at() - minutes(120));
                s.current = Some(tenant(2));
                s.broadcasts = Broadcasts::OptedOut;
            }),
            context: ctx_shared.clone(),
            at: at(),
            input: text("next"),
            expect_state: with(Shared(Idle), |s| {
                s.last_activity_at = Some(at());
                s.current = Some(tenant(2));
                s.broadcasts = Broadcasts::OptedOut;
            }),
            expect_effects: vec![reply(render_unknown(&b(), &shared()))],
        },
        Case {
            name: "an older message arriving late neither expires nor rewinds the clock",
            state: with(Shared(Confirming), |s| {
                s.last_activity_at = Some(at() + minutes(90))
            }),
            context: ctx_shared.clone(),
            at: at(),
            input: text("yes"),
            expect_state: with(Shared(Idle), |s| {
                s.last_activity_at = Some(at() + minutes(90))
            }),
            expect_effects: vec![Effect::Redeem {
                tenant: tenant(1),
                reward: r1(),
            }],
        },
        Case {
            name: "a confirm button for another reward asks about that reward",
            state: Shared(Confirming).state(),
            context: ctx_shared.clone(),
            at: at(),
            input: button(&format!("confirm:{}", r2())),
            expect_state: touched(with(Shared(Confirming), |s| {
                s.menu = MenuPosition::ConfirmingReward { reward: r2() }
            })),
            expect_effects: vec![ask(r2())],
        },
        Case {
            name: "NEXT on the last possible page stays there",
            state: with(Shared(Browsing), |s| {
                s.menu = MenuPosition::BrowsingRewards {
                    page: keywords::PAGE_MAX,
                }
            }),
            context: ctx_shared.clone(),
            at: at(),
            input: text("more"),
            expect_state: touched(with(Shared(Browsing), |s| {
                s.menu = MenuPosition::BrowsingRewards {
                    page: keywords::PAGE_MAX,
                }
            })),
            expect_effects: vec![Effect::ShowRewards {
                tenant: tenant(1),
                page: keywords::PAGE_MAX,
            }],
        },
        Case {
            name: "BACK on the first page stays there",
            state: with(Own(Browsing), |s| {
                s.menu = MenuPosition::BrowsingRewards { page: 1 }
            }),
            context: ctx_own.clone(),
            at: at(),
            input: text("prev"),
            expect_state: touched(with(Own(Browsing), |s| {
                s.menu = MenuPosition::BrowsingRewards { page: 1 }
            })),
            expect_effects: vec![Effect::ShowRewards {
                tenant: tenant(1),
                page: 1,
            }],
        },
        Case {
            name: "START after STOP opts back in",
            state: with(Own(Idle), |s| s.broadcasts = Broadcasts::OptedOut),
            context: ctx_own.clone(),
            at: at(),
            input: text("Start"),
            expect_state: touched(Own(Idle).state()),
            expect_effects: vec![
                Effect::SetBroadcastOptIn { opted_in: true },
                reply(render_opted_in()),
            ],
        },
        Case {
            name: "STOP when already out answers but records nothing new",
            state: with(Own(Idle), |s| s.broadcasts = Broadcasts::OptedOut),
            context: ctx_own.clone(),
            at: at(),
            input: button("menu:stop"),
            expect_state: touched(with(Own(Idle), |s| s.broadcasts = Broadcasts::OptedOut)),
            expect_effects: vec![reply(render_opted_out())],
        },
        Case {
            name: "the resume webhook opts in without a reply or activity",
            state: with(Shared(Browsing), |s| s.broadcasts = Broadcasts::OptedOut),
            context: ctx_shared.clone(),
            at: at(),
            input: Input::Preference {
                marketing: MarketingPreference::OptIn,
            },
            expect_state: Shared(Browsing).state(),
            expect_effects: vec![Effect::SetBroadcastOptIn { opted_in: true }],
        },
        Case {
            name: "the stop webhook when already out changes nothing",
            state: with(Shared(Idle), |s| s.broadcasts = Broadcasts::OptedOut),
            context: ctx_shared.clone(),
            at: at(),
            input: Input::Preference {
                marketing: MarketingPreference::OptOut,
            },
            expect_state: with(Shared(Idle), |s| s.broadcasts = Broadcasts::OptedOut),
            expect_effects: vec![],
        },
        Case {
            name: "a vendor id the customer has not joined never switches to that tenant",
            state: Shared(Browsing).state(),
            context: ctx_shared.clone(),
            at: at(),
            input: list(&format!("vendor:{}", tenant(3))),
            expect_state: touched(Shared(Browsing).state()),
            expect_effects: vec![reply(render_vendors(&[a(), b()], tenant(1)))],
        },
        Case {
            name: "the code of a joined vendor switches to it and refreshes its name",
            state: Shared(Confirming).state(),
            context: ctx_shared.clone(),
            at: at(),
            input: resolved(
                &shop1(),
                CodeSource::Join,
                Some(Vendor::new(tenant(2), "Kings Salon & Spa")),
            ),
            expect_state: touched(with(Shared(Idle), |s| {
                s.vendors[1].name = "Kings Salon & Spa".into();
                s.current = Some(tenant(2));
            })),
            expect_effects: vec![reply(render_switched(&Vendor::new(
                tenant(2),
                "Kings Salon & Spa",
            )))],
        },
        Case {
            name: "a customer with the most vendors cannot join another",
            state: with(Shared(Idle), |s| s.vendors = ten_vendors.clone()),
            context: ctx_shared.clone(),
            at: at(),
            input: resolved(&shop1(), CodeSource::Bare, Some(c())),
            expect_state: touched(with(Shared(Idle), |s| s.vendors = ten_vendors.clone())),
            expect_effects: vec![reply(render_too_many_vendors(&c(), &ten_vendors))],
        },
        Case {
            name: "own number: a state of another tenant is replaced and the customer enrolled",
            state: with(Own(Confirming), |s| {
                s.vendors = vec![b()];
                s.current = Some(tenant(2));
            }),
            context: ctx_own.clone(),
            at: at(),
            input: text("points"),
            expect_state: touched(Own(Idle).state()),
            expect_effects: vec![enrol_a(), Effect::ShowPoints { tenant: tenant(1) }],
        },
        Case {
            name: "own number: a renamed vendor is renamed in the state, no new enrolment",
            state: with(Own(Idle), |s| s.vendors[0].name = "Old name".into()),
            context: ctx_own.clone(),
            at: at(),
            input: text("history"),
            expect_state: touched(Own(Idle).state()),
            expect_effects: vec![Effect::ShowHistory { tenant: tenant(1) }],
        },
        Case {
            name: "a typo of a keyword works through step",
            state: Shared(Idle).state(),
            context: ctx_shared.clone(),
            at: at(),
            input: text("Pionts"),
            expect_state: touched(Shared(Idle).state()),
            expect_effects: vec![Effect::ShowPoints { tenant: tenant(1) }],
        },
        Case {
            name: "a near miss is a code to resolve on the shared number",
            state: Shared(Idle).state(),
            context: ctx_shared.clone(),
            at: at(),
            input: text("pointless"),
            expect_state: touched(Shared(Idle).state()),
            expect_effects: vec![Effect::ResolveVendor {
                query: VendorQuery {
                    code: VendorCode::parse("POINTLESS").unwrap(),
                    source: CodeSource::Bare,
                },
            }],
        },
        Case {
            name: "a near miss is not understood on an own number",
            state: Own(Idle).state(),
            context: ctx_own.clone(),
            at: at(),
            input: text("pointless"),
            expect_state: touched(Own(Idle).state()),
            expect_effects: vec![reply(render_unknown(&a(), &own()))],
        },
        Case {
            name: "a template quick-reply payload is a keyword",
            state: Own(Idle).state(),
            context: ctx_own.clone(),
            at: at(),
            input: Input::QuickReply {
                payload: "POINTS".into(),
            },
            expect_state: touched(Own(Idle).state()),
            expect_effects: vec![Effect::ShowPoints { tenant: tenant(1) }],
        },
        Case {
            name: "a template quick-reply payload is never a vendor code",
            state: Shared(Idle).state(),
            context: ctx_shared.clone(),
            at: at(),
            input: Input::QuickReply {
                payload: "SHOP1".into(),
            },
            expect_state: touched(Shared(Idle).state()),
            expect_effects: vec![reply(render_unknown(&a(), &shared()))],
        },
        Case {
            name: "a malformed id is not understood",
            state: Shared(Browsing).state(),
            context: ctx_shared.clone(),
            at: at(),
            input: list("reward:not-a-uuid"),
            expect_state: touched(Shared(Browsing).state()),
            expect_effects: vec![reply(render_unknown(&a(), &shared()))],
        },
        Case {
            name: "the menu of a single-vendor customer on the shared number has no switch",
            state: with(Shared(Idle), |s| s.vendors = vec![a()]),
            context: ctx_shared.clone(),
            at: at(),
            input: text("MENU"),
            expect_state: touched(with(Shared(Idle), |s| s.vendors = vec![a()])),
            expect_effects: vec![reply(render_menu(&a(), Broadcasts::OptedIn, false))],
        },
        Case {
            name: "the menu of an opted-out customer offers START",
            state: with(Own(Idle), |s| s.broadcasts = Broadcasts::OptedOut),
            context: ctx_own,
            at: at(),
            input: text("menu"),
            expect_state: touched(with(Own(Idle), |s| s.broadcasts = Broadcasts::OptedOut)),
            expect_effects: vec![reply(render_menu(&a(), Broadcasts::OptedOut, false))],
        },
    ]
}

#[test]
fn specific_transitions() {
    for case in specific_cases() {
        let inbound = Inbound {
            at: case.at,
            input: case.input.clone(),
        };
        let stepped = step(&case.state, &inbound, &case.context);
        assert_eq!(
            stepped.effects, case.expect_effects,
            "effects: {}",
            case.name
        );
        assert_eq!(stepped.state, case.expect_state, "state: {}", case.name);
    }
}

/// The whole journey on the shared number, as the shell would drive it, with the state
/// stored (serialized) and loaded between messages.
#[test]
fn journey_join_browse_choose_confirm() {
    let context = Context {
        routing: Routing::SharedNumber,
        inactivity_timeout: minutes(30),
    };
    let mut state = ConversationState::new();
    let mut send = |input: Input, minute: i64| -> Vec<Effect> {
        let inbound = Inbound {
            at: at() + minutes(minute),
            input,
        };
        let stepped = step(&state, &inbound, &context);
        let stored = rmp_serde::to_vec_named(&stepped.state).unwrap();
        state = rmp_serde::from_slice(&stored).unwrap();
        assert_eq!(state, stepped.state, "the state survives storage");
        stepped.effects
    };

    assert_eq!(send(text("Hello"), 0), vec![reply(render_need_vendor())]);
    let query = VendorQuery {
        code: VendorCode::parse("CHICKEN1").unwrap(),
        source: CodeSource::Join,
    };
    assert_eq!(
        send(text("join chicken1"), 1),
        vec![Effect::ResolveVendor {
            query: query.clone()
        }]
    );
    assert_eq!(
        send(
            Input::VendorResolved {
                query,
                vendor: Some(c())
            },
            1
        ),
        vec![
            Effect::EnrolCustomer { tenant: tenant(3) },
            reply(render_joined(&c()))
        ]
    );
    assert_eq!(
        send(button("menu:rewards"), 2),
        vec![Effect::ShowRewards {
            tenant: tenant(3),
            page: 1
        }]
    );
    assert_eq!(
        send(list("rewards:page:2"), 3),
        vec![Effect::ShowRewards {
            tenant: tenant(3),
            page: 2
        }]
    );
    assert_eq!(
        send(list(&format!("reward:{}", r1())), 4),
        vec![Effect::AskConfirmation {
            tenant: tenant(3),
            reward: r1()
        }]
    );
    assert_eq!(
        send(button(&format!("confirm:{}", r1())), 5),
        vec![Effect::Redeem {
            tenant: tenant(3),
            reward: r1()
        }]
    );
    // Meta delivers the same tap twice, or the customer taps again: no second redemption.
    assert_eq!(
        send(button(&format!("confirm:{}", r1())), 5),
        vec![Effect::AskConfirmation {
            tenant: tenant(3),
            reward: r1()
        }]
    );
    assert_eq!(
        send(text("history"), 6),
        vec![Effect::ShowHistory { tenant: tenant(3) }]
    );
    assert_eq!(state.vendors(), &[c()]);
    assert_eq!(state.current(), Some(&c()));
    assert_eq!(state.menu(), MenuPosition::Idle);
    assert_eq!(state.last_activity_at(), Some(at() + minutes(6)));
    assert_eq!(state.broadcasts(), Broadcasts::OptedIn);
}

/// Every customer message other than a reaction is answered, in every state: a `Reply`,
/// or an effect whose reply the shell renders; and answered once, because Meta paces
/// messages to one user (one rich message beats several short ones). Checked over the
/// whole table.
#[test]
fn every_message_is_answered_once_and_unknown_input_never_with_silence() {
    for row in table() {
        let answers = row.effects.iter().filter(|e| {
            matches!(
                e,
                Effect::Reply(_)
                    | Effect::ShowPoints { .. }
                    | Effect::ShowRewards { .. }
                    | Effect::AskConfirmation { .. }
                    | Effect::Redeem { .. }
                    | Effect::ShowHistory { .. }
                    | Effect::ResolveVendor { .. }
            )
        });
        let answers = answers.count();
        assert!(
            answers <= 1,
            "{:?} in {:?} answers {answers} times",
            row.input,
            row.states
        );
        let answered = answers == 1;
        let silent_by_design =
            matches!(
                classify(&row.input),
                InputClass::Reaction | InputClass::Preference
            ) || (matches!(
                classify(&row.input),
                InputClass::VendorFound | InputClass::VendorNotFound
            ) && row.states.iter().all(|s| matches!(s, Own(_) | OwnFirst)));
        assert!(
            answered || silent_by_design,
            "{:?} in {:?} gets no answer",
            row.input,
            row.states
        );
    }
}

#[test]
fn every_effect_is_scoped_to_a_joined_vendor() {
    for row in table() {
        for &class in row.states {
            let inbound = Inbound {
                at: at(),
                input: row.input.clone(),
            };
            let stepped = step(&class.state(), &inbound, &class.context());
            for effect in &stepped.effects {
                let tenant = match effect {
                    Effect::ShowPoints { tenant }
                    | Effect::ShowRewards { tenant, .. }
                    | Effect::AskConfirmation { tenant, .. }
                    | Effect::Redeem { tenant, .. }
                    | Effect::ShowHistory { tenant }
                    | Effect::EnrolCustomer { tenant } => *tenant,
                    Effect::ResolveVendor { .. }
                    | Effect::SetBroadcastOptIn { .. }
                    | Effect::Reply(_) => continue,
                };
                assert!(
                    stepped.state.is_joined(tenant),
                    "{class:?} × {:?}: effect for a tenant not joined",
                    row.input
                );
            }
        }
    }
}
