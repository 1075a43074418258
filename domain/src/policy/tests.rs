use std::net::{IpAddr, Ipv4Addr};

use chrono::{TimeDelta, TimeZone};
use proptest::prelude::*;

use super::*;

fn t(hours: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_750_000_000, 0).unwrap() + TimeDelta::hours(hours)
}

fn scopes(names: &[&str]) -> Scopes {
    Scopes::parse(names).unwrap()
}

fn ips(cidrs: &[&str]) -> AllowedIps {
    AllowedIps::parse(cidrs).unwrap()
}

fn rate(n: u64) -> Option<RateLimit> {
    Some(RateLimit::parse(n).unwrap())
}

fn unrestricted() -> Restrictions {
    Restrictions::default()
}

/// A key with every scope and the given restrictions.
fn given_a_key_restricted_to(restrictions: Restrictions) -> Actor {
    Actor::Key(Authority {
        scopes: Scope::all(),
        restrictions,
    })
}

/// The restricted creator: an expiry, an allowlist and a low rate limit.
fn restricted() -> Restrictions {
    Restrictions {
        allowed_ips: ips(&["10.0.0.0/8"]),
        expires_at: Some(t(24)),
        rate_limit_per_minute: rate(10),
    }
}

fn refused(restriction: Restriction) -> impl Fn(&Result<(), PolicyError>) -> bool {
    move |r| matches!(r, Err(PolicyError::RestrictionNotHeld { restriction: got, .. }) if *got == restriction)
}

// ------------------------------------------------------------- subordination

#[test]
fn a_write_only_key_should_not_manage_the_root_key() {
    // Given a key holding only api-keys:write
    let actor = Actor::Key(Authority {
        scopes: scopes(&["api-keys:write"]),
        restrictions: unrestricted(),
    });
    // When it would update or rotate a key holding every scope
    let result = ensure_may_manage(&actor, &Scope::all());
    // Then it is refused, naming a scope it lacks
    assert!(
        matches!(result, Err(PolicyError::NotSubordinate { scope }) if scope != Scope::API_KEYS_WRITE),
        "{result:?}"
    );
}

#[test]
fn a_key_should_manage_keys_whose_scopes_are_a_subset_of_its_own() {
    let actor = Actor::Key(Authority {
        scopes: scopes(&["api-keys:write", "assets:read", "work-orders:read"]),
        restrictions: unrestricted(),
    });
    assert_eq!(ensure_may_manage(&actor, &scopes(&["assets:read"])), Ok(()));
    assert_eq!(ensure_may_manage(&actor, &Scopes::new()), Ok(()));
    // Itself included.
    assert_eq!(
        ensure_may_manage(
            &actor,
            &scopes(&["api-keys:write", "assets:read", "work-orders:read"])
        ),
        Ok(())
    );
    assert_eq!(
        ensure_may_manage(&actor, &scopes(&["assets:read", "assets:write"])),
        Err(PolicyError::NotSubordinate {
            scope: Scope::ASSETS_WRITE
        })
    );
}

#[test]
fn an_operator_should_be_bound_by_no_rule() {
    let op = Actor::Operator;
    assert_eq!(ensure_may_manage(&op, &Scope::all()), Ok(()));
    assert_eq!(ensure_may_grant(&op, &Scope::all()), Ok(()));
    assert_eq!(
        ensure_may_create(&op, &Scope::all(), &unrestricted(), Plan::Professional),
        Ok(())
    );
    assert_eq!(
        ensure_may_change(&op, &restricted(), &unrestricted(), Plan::Professional),
        Ok(())
    );
}

// ------------------------------------------------------------------ creation

#[test]
fn a_restricted_key_should_not_create_an_unrestricted_child() {
    // Given a key with an expiry, an allowlist and a low rate limit
    let actor = given_a_key_restricted_to(restricted());
    // When it creates a key with none of them
    let result = ensure_may_create(
        &actor,
        &scopes(&["assets:read"]),
        &unrestricted(),
        Plan::Enterprise,
    );
    // Then it is refused (the expiry is checked first)
    assert!(refused(Restriction::Expiry)(&result), "{result:?}");
}

#[test]
fn each_looser_restriction_of_a_child_should_be_refused_by_name() {
    let actor = given_a_key_restricted_to(restricted());
    let mut child = restricted();
    child.expires_at = Some(t(25));
    assert!(refused(Restriction::Expiry)(&ensure_may_create(
        &actor,
        &Scopes::new(),
        &child,
        Plan::Enterprise
    )));

    let mut child = restricted();
    child.allowed_ips = AllowedIps::any();
    assert!(refused(Restriction::AllowedIps)(&ensure_may_create(
        &actor,
        &Scopes::new(),
        &child,
        Plan::Enterprise
    )));
    child.allowed_ips = ips(&["10.1.0.0/16", "192.168.0.0/24"]);
    assert!(refused(Restriction::AllowedIps)(&ensure_may_create(
        &actor,
        &Scopes::new(),
        &child,
        Plan::Enterprise
    )));

    let mut child = restricted();
    child.rate_limit_per_minute = rate(11);
    assert!(refused(Restriction::RateLimit)(&ensure_may_create(
        &actor,
        &Scopes::new(),
        &child,
        Plan::Enterprise
    )));
    // No override: the plan's 500 per minute, above the creator's 10.
    child.rate_limit_per_minute = None;
    let result = ensure_may_create(&actor, &Scopes::new(), &child, Plan::Enterprise);
    assert_eq!(
        result.unwrap_err().to_string().split(':').next(),
        Some("rate_limit_per_minute")
    );
}

#[test]
fn a_restricted_key_should_create_an_equally_or_more_restricted_child() {
    let actor = given_a_key_restricted_to(restricted());
    assert_eq!(
        ensure_may_create(&actor, &Scopes::new(), &restricted(), Plan::Enterprise),
        Ok(())
    );
    let tighter = Restrictions {
        allowed_ips: ips(&["10.1.2.0/24", "10.9.0.7"]),
        expires_at: Some(t(1)),
        rate_limit_per_minute: rate(5),
    };
    assert_eq!(
        ensure_may_create(&actor, &Scopes::new(), &tighter, Plan::Enterprise),
        Ok(())
    );
}

#[test]
fn a_key_without_an_override_should_create_children_up_to_its_plans_limit() {
    let actor = given_a_key_restricted_to(unrestricted());
    let mut child = unrestricted();
    child.rate_limit_per_minute = rate(100);
    assert_eq!(
        ensure_may_create(&actor, &Scopes::new(), &child, Plan::Professional),
        Ok(())
    );
    child.rate_limit_per_minute = rate(101);
    assert!(refused(Restriction::RateLimit)(&ensure_may_create(
        &actor,
        &Scopes::new(),
        &child,
        Plan::Professional
    )));
}

#[test]
fn a_key_should_not_grant_a_scope_it_does_not_hold() {
    let actor = Actor::Key(Authority {
        scopes: scopes(&["api-keys:create", "work-orders:read"]),
        restrictions: unrestricted(),
    });
    assert_eq!(
        ensure_may_create(
            &actor,
            &scopes(&["work-orders:read", "assets:write"]),
            &unrestricted(),
            Plan::Enterprise
        ),
        Err(PolicyError::ScopeNotHeld(Scope::ASSETS_WRITE))
    );
}

#[test]
fn an_ipv4_mapped_ipv6_network_should_count_as_its_ipv4_network() {
    let outer = Cidr::parse("10.0.0.0/8").unwrap();
    assert!(cidr_within(
        Cidr::parse("::ffff:10.1.0.0/112").unwrap(),
        outer
    ));
    assert!(!cidr_within(
        Cidr::parse("::ffff:11.1.0.0/112").unwrap(),
        outer
    ));
    assert!(!cidr_within(Cidr::parse("::ffff:0:0/95").unwrap(), outer));
    assert!(!cidr_within(Cidr::parse("2001:db8::/32").unwrap(), outer));
    assert!(cidr_within(
        Cidr::parse("2001:db8:1::/48").unwrap(),
        Cidr::parse("2001:db8::/32").unwrap()
    ));
}

// ----------------------------------------------------------------- loosening

#[test]
fn a_restricted_key_should_not_remove_another_keys_allowlist_or_expiry() {
    // Given a key that is itself IP-locked and expiring
    let actor = given_a_key_restricted_to(restricted());
    let before = Restrictions {
        allowed_ips: ips(&["10.1.0.0/16"]),
        expires_at: Some(t(2)),
        rate_limit_per_minute: rate(5),
    };
    // When it removes the target's allowlist
    let mut no_ips = before.clone();
    no_ips.allowed_ips = AllowedIps::any();
    // Then it is refused
    assert!(refused(Restriction::AllowedIps)(&ensure_may_change(
        &actor,
        &before,
        &no_ips,
        Plan::Enterprise
    )));
    // And so is removing the expiry, or extending it past its own
    let mut no_expiry = before.clone();
    no_expiry.expires_at = None;
    assert!(refused(Restriction::Expiry)(&ensure_may_change(
        &actor,
        &before,
        &no_expiry,
        Plan::Enterprise
    )));
    let mut later = before.clone();
    later.expires_at = Some(t(48));
    assert!(refused(Restriction::Expiry)(&ensure_may_change(
        &actor,
        &before,
        &later,
        Plan::Enterprise
    )));
    // And raising the limit past its own
    let mut faster = before.clone();
    faster.rate_limit_per_minute = rate(50);
    assert!(refused(Restriction::RateLimit)(&ensure_may_change(
        &actor,
        &before,
        &faster,
        Plan::Enterprise
    )));
}

#[test]
fn a_restricted_key_should_loosen_only_as_far_as_its_own_restrictions() {
    let actor = given_a_key_restricted_to(restricted());
    let before = Restrictions {
        allowed_ips: ips(&["10.1.0.0/16"]),
        expires_at: Some(t(2)),
        rate_limit_per_minute: rate(5),
    };
    let within = Restrictions {
        // Widened, but inside the actor's 10.0.0.0/8.
        allowed_ips: ips(&["10.0.0.0/9"]),
        // Extended, to the actor's own expiry.
        expires_at: Some(t(24)),
        // Raised, to the actor's own limit.
        rate_limit_per_minute: rate(10),
    };
    assert_eq!(
        ensure_may_change(&actor, &before, &within, Plan::Enterprise),
        Ok(())
    );
}

#[test]
fn tightening_should_always_be_allowed() {
    // Given a key restricted to a network the target's networks are outside of
    let actor = given_a_key_restricted_to(Restrictions {
        allowed_ips: ips(&["192.168.0.0/16"]),
        expires_at: Some(t(1)),
        rate_limit_per_minute: rate(1),
    });
    let before = Restrictions {
        allowed_ips: ips(&["10.0.0.0/8"]),
        expires_at: None,
        rate_limit_per_minute: None,
    };
    let tighter = Restrictions {
        allowed_ips: ips(&["10.1.0.0/16"]),
        expires_at: Some(t(100)),
        rate_limit_per_minute: rate(100),
    };
    assert_eq!(
        ensure_may_change(&actor, &before, &tighter, Plan::Enterprise),
        Ok(())
    );
    // Keeping everything as it is is no loosening either.
    assert_eq!(
        ensure_may_change(&actor, &before, &before, Plan::Enterprise),
        Ok(())
    );
}

#[test]
fn an_unrestricted_key_should_loosen_anything() {
    let actor = given_a_key_restricted_to(unrestricted());
    assert_eq!(
        ensure_may_change(&actor, &restricted(), &unrestricted(), Plan::Enterprise),
        Ok(())
    );
}

#[test]
fn a_key_should_not_lift_its_own_restrictions() {
    // A key changing itself is bound like any other actor: its allowlist is its bound.
    let own = restricted();
    let actor = given_a_key_restricted_to(own.clone());
    let mut lifted = own.clone();
    lifted.allowed_ips = AllowedIps::any();
    assert!(refused(Restriction::AllowedIps)(&ensure_may_change(
        &actor,
        &own,
        &lifted,
        Plan::Enterprise
    )));
}

// ---------------------------------------------------------------- properties

fn any_cidr() -> impl Strategy<Value = Cidr> {
    // Networks inside 10.0.0.0/8 with prefixes from 8 to 32, so that random ones often
    // nest and overlap.
    (any::<u32>(), 8u8..=32).prop_map(|(bits, len)| {
        let addr = Ipv4Addr::from(0x0a00_0000 | (bits & 0x00ff_ffff));
        Cidr::parse(&format!("{addr}/{len}")).unwrap()
    })
}

fn any_ips() -> impl Strategy<Value = AllowedIps> {
    prop::collection::vec(any_cidr(), 0..4).prop_map(|v| v.into_iter().collect())
}

fn any_restrictions() -> impl Strategy<Value = Restrictions> {
    (
        any_ips(),
        prop::option::of(0i64..100),
        prop::option::of(1u64..1000),
    )
        .prop_map(|(allowed_ips, hours, limit)| Restrictions {
            allowed_ips,
            expires_at: hours.map(t),
            rate_limit_per_minute: limit.and_then(rate),
        })
}

/// A random key's restrictions, each field taken from `base` or from the random key: so
/// that children and changes within a creator's bounds are common, not rare.
fn mixed_with(base: Restrictions) -> impl Strategy<Value = Restrictions> {
    (any_restrictions(), any::<[bool; 3]>()).prop_map(move |(r, [ips, exp, rl])| Restrictions {
        allowed_ips: if ips {
            base.allowed_ips.clone()
        } else {
            r.allowed_ips
        },
        expires_at: if exp { base.expires_at } else { r.expires_at },
        rate_limit_per_minute: if rl {
            base.rate_limit_per_minute
        } else {
            r.rate_limit_per_minute
        },
    })
}

fn creator_and_child() -> impl Strategy<Value = (Restrictions, Restrictions)> {
    any_restrictions().prop_flat_map(|c| (Just(c.clone()), mixed_with(c)))
}

fn any_plan() -> impl Strategy<Value = Plan> {
    prop_oneof![
        Just(Plan::Starter),
        Just(Plan::Professional),
        Just(Plan::Enterprise)
    ]
}

/// Addresses to probe with: inside each given network, and anywhere in 10.0.0.0/8.
fn probes(extra: &[&AllowedIps], random: &[u32]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = random
        .iter()
        .map(|b| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (b & 0x00ff_ffff))))
        .collect();
    for set in extra {
        for c in set.iter() {
            out.push(c.as_ipnet().network());
            out.push(c.as_ipnet().broadcast());
        }
    }
    out
}

/// The rate a key with these restrictions gets, by the one rule the auth layer applies.
fn effective(r: &Restrictions, plan: Plan) -> u32 {
    plan.effective_requests_per_minute(r.rate_limit_per_minute)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A child's restrictions are always within its creator's: whatever is accepted, the
    /// child is never usable from an address, at a time or at a rate its creator is not.
    #[test]
    fn a_childs_restrictions_should_always_be_within_its_creators(
        (creator, child) in creator_and_child(),
        plan in any_plan(),
        random in prop::collection::vec(any::<u32>(), 8),
        at in 0i64..120,
    ) {
        let actor = given_a_key_restricted_to(creator.clone());
        if ensure_may_create(&actor, &Scopes::new(), &child, plan).is_ok() {
            for addr in probes(&[&child.allowed_ips, &creator.allowed_ips], &random) {
                prop_assert!(
                    !child.allowed_ips.permits(addr) || creator.allowed_ips.permits(addr),
                    "{addr} permitted by the child {:?}, not the creator {:?}",
                    child.allowed_ips, creator.allowed_ips
                );
            }
            let alive = |r: &Restrictions| r.expires_at.is_none_or(|e| t(at) < e);
            prop_assert!(!alive(&child) || alive(&creator));
            prop_assert!(effective(&child, plan) <= effective(&creator, plan));
            // An override on the creator binds the child even if the plan changes later.
            prop_assert!(creator.rate_limit_per_minute.is_none() || child.rate_limit_per_minute.is_some());
        }
    }

    /// A change never gives a key an address, a time or a rate that neither it nor the
    /// actor already had.
    #[test]
    fn a_change_should_loosen_nothing_beyond_the_actor(
        (bound, after) in creator_and_child(),
        before in any_restrictions(),
        plan in any_plan(),
        random in prop::collection::vec(any::<u32>(), 8),
        at in 0i64..120,
    ) {
        let actor = given_a_key_restricted_to(bound.clone());
        if ensure_may_change(&actor, &before, &after, plan).is_ok() {
            for addr in probes(&[&after.allowed_ips, &before.allowed_ips, &bound.allowed_ips], &random) {
                prop_assert!(
                    !after.allowed_ips.permits(addr)
                        || before.allowed_ips.permits(addr)
                        || bound.allowed_ips.permits(addr),
                    "{addr}"
                );
            }
            let alive = |r: &Restrictions| r.expires_at.is_none_or(|e| t(at) < e);
            prop_assert!(!alive(&after) || alive(&before) || alive(&bound));
            prop_assert!(
                effective(&after, plan) <= effective(&before, plan).max(effective(&bound, plan))
            );
        }
    }

    /// Whatever a key is, it may always create a copy of its own restrictions, and any
    /// change that keeps a key as it is passes.
    #[test]
    fn keeping_or_copying_ones_own_restrictions_should_always_pass(
        own in any_restrictions(),
        other in any_restrictions(),
        plan in any_plan(),
    ) {
        let actor = given_a_key_restricted_to(own.clone());
        prop_assert_eq!(ensure_may_create(&actor, &Scopes::new(), &own, plan), Ok(()));
        prop_assert_eq!(ensure_may_change(&actor, &other, &other, plan), Ok(()));
    }
}
