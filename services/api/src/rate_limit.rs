//! Request rate limits per principal (`FE_RATE_LIMIT_PER_MIN`) and per tenant
//! (`FE_TENANT_RATE_LIMIT_PER_MIN`), checked right after authentication so that anonymous
//! floods are refused by the token check and authenticated ones here, with 429
//! `rate_limited` and `Retry-After`. GCRA limiters from `governor`: a principal may burst up to
//! its per-minute quota, then gets one request per (60 s / quota). Keys are "tenant/subject"
//! and "tenant"; idle keys are pruned so memory stays bounded. Limits are per API replica.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;
use events::Principal;

#[derive(Clone)]
pub struct RateLimits {
    inner: Arc<Inner>,
}

struct Inner {
    per_principal: Option<DefaultKeyedRateLimiter<String>>,
    per_tenant: Option<DefaultKeyedRateLimiter<String>>,
    checks: AtomicU64,
}

fn limiter(per_min: u32) -> Option<DefaultKeyedRateLimiter<String>> {
    NonZeroU32::new(per_min).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

impl RateLimits {
    /// A limit of 0 disables that limiter.
    pub fn new(per_principal_per_min: u32, per_tenant_per_min: u32) -> Self {
        Self {
            inner: Arc::new(Inner {
                per_principal: limiter(per_principal_per_min),
                per_tenant: limiter(per_tenant_per_min),
                checks: AtomicU64::new(0),
            }),
        }
    }

    pub fn check(&self, principal: &Principal) -> Result<(), ApiError> {
        let inner = &self.inner;
        if inner.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            for l in [&inner.per_principal, &inner.per_tenant]
                .into_iter()
                .flatten()
            {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
        let tenant = principal.tenant.as_str().to_owned();
        let keyed = [
            (
                &inner.per_principal,
                format!("{tenant}/{}", principal.subject),
            ),
            (&inner.per_tenant, tenant),
        ];
        for (limiter, key) in keyed {
            let Some(limiter) = limiter else { continue };
            if let Err(not_until) = limiter.check_key(&key) {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                metrics::counter!("fe_rate_limited_total").increment(1);
                return Err(ApiError::RateLimited {
                    retry_after_s: wait.as_secs().max(1),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::TenantId;

    fn principal(sub: &str, tenant: &str) -> Principal {
        Principal::new(sub, TenantId::parse(tenant).unwrap(), vec![]).unwrap()
    }

    #[test]
    fn a_principal_is_limited_after_its_quota_and_others_are_not() {
        let limits = RateLimits::new(3, 0);
        let alice = principal("alice", "acme");
        for _ in 0..3 {
            assert!(limits.check(&alice).is_ok());
        }
        match limits.check(&alice) {
            Err(ApiError::RateLimited { retry_after_s }) => {
                assert!((1..=20).contains(&retry_after_s))
            }
            other => panic!("expected rate_limited, got {other:?}"),
        }
        assert!(limits.check(&principal("bob", "acme")).is_ok());
        assert!(limits.check(&principal("alice", "globex")).is_ok());
    }

    #[test]
    fn the_tenant_limit_spans_its_principals() {
        let limits = RateLimits::new(0, 2);
        assert!(limits.check(&principal("a", "acme")).is_ok());
        assert!(limits.check(&principal("b", "acme")).is_ok());
        assert!(limits.check(&principal("c", "acme")).is_err());
        assert!(limits.check(&principal("a", "globex")).is_ok());
    }
}
