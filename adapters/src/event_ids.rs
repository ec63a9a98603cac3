//! Event ids for the command service: time-ordered UUIDs (v7), so ids sort roughly by the
//! moment they were made, which keeps the event id index compact; and, for a command run
//! under an `Idempotency-Key` claim, ids derived from the claim, so that a retry can find what
//! the command wrote and the log can refuse a superseded execution (migration
//! `20261126000001_idempotency_leases.sql`).

use std::cell::Cell;

use aisc_domain::command_service::EventIds;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, Default)]
pub struct TimeOrderedEventIds;

impl EventIds for TimeOrderedEventIds {
    /// Inside [`with_claim_ids`], the claim's next id; elsewhere a v7 UUID.
    fn next_id(&self) -> Uuid {
        CLAIM
            .try_with(|(ids, next)| {
                let counter = next.get();
                next.set(counter + 1);
                ids.id(counter)
            })
            .unwrap_or_else(|_| Uuid::now_v7())
    }
}

tokio::task_local! {
    static CLAIM: (ClaimIds, Cell<u64>);
}

/// Runs `future` (a command) with the event ids of `ids`: every event id the command service
/// makes while it runs is `ids.id(0)`, `ids.id(1)`, … in turn.
pub async fn with_claim_ids<F: Future>(ids: ClaimIds, future: F) -> F::Output {
    CLAIM.scope((ids, Cell::new(0)), future).await
}

/// The event ids of one execution of an `Idempotency-Key` claim: the claim's random tag, the
/// execution's generation (bumped by each takeover) and a counter. Layout (big-endian):
/// bytes 0–7 the tag (whose UUID version nibble is 8), bytes 8–9 the variant bits `10` and the
/// generation modulo 2¹⁴, bytes 10–15 the counter. All ids of a tag are therefore one range of
/// the event id index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimIds {
    pub tag: [u8; 8],
    pub generation: i32,
}

const GENERATION_BITS: u16 = 0x3fff;

impl ClaimIds {
    /// A new random tag (60 random bits; the version nibble says 8).
    pub fn new_tag() -> [u8; 8] {
        let mut tag = [0_u8; 8];
        tag.copy_from_slice(&Uuid::new_v4().as_bytes()[..8]);
        tag[6] = (tag[6] & 0x0f) | 0x80;
        tag
    }

    pub fn id(&self, counter: u64) -> Uuid {
        let generation = (self.generation as u16) & GENERATION_BITS;
        let mut bytes = [0_u8; 16];
        bytes[..8].copy_from_slice(&self.tag);
        bytes[8..10].copy_from_slice(&(0x8000 | generation).to_be_bytes());
        bytes[10..].copy_from_slice(&counter.to_be_bytes()[2..]);
        Uuid::from_bytes(bytes)
    }

    /// The lowest and the highest id of any generation of `tag`.
    pub fn range(tag: [u8; 8]) -> (Uuid, Uuid) {
        let mut low = [0_u8; 16];
        low[..8].copy_from_slice(&tag);
        low[8] = 0x80;
        let mut high = [0xff_u8; 16];
        high[..8].copy_from_slice(&tag);
        high[8] = 0xbf;
        (Uuid::from_bytes(low), Uuid::from_bytes(high))
    }

    /// The generation (modulo 2¹⁴) an id of a claim was made by.
    pub fn generation_of(id: Uuid) -> u16 {
        u16::from_be_bytes([id.as_bytes()[8], id.as_bytes()[9]]) & GENERATION_BITS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_ids_are_version_8_variant_rfc_and_stay_within_their_tag_range() {
        let tag = ClaimIds::new_tag();
        let (low, high) = ClaimIds::range(tag);
        for generation in [1, 2, 16_383, 16_384, 70_000] {
            let ids = ClaimIds { tag, generation };
            for counter in [0, 1, 255, (1 << 48) - 1] {
                let id = ids.id(counter);
                assert_eq!(id.get_version_num(), 8, "{id}");
                assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
                assert!(low <= id && id <= high, "{id} outside {low}..{high}");
                assert_eq!(ClaimIds::generation_of(id), (generation % 16_384) as u16);
            }
            assert!(ids.id(0) < ids.id(1), "ids sort by counter within an execution");
        }
        let other = ClaimIds { tag: ClaimIds::new_tag(), generation: 1 }.id(0);
        assert!(!(low <= other && other <= high), "another tag's ids are outside the range");
    }

    #[tokio::test]
    async fn inside_a_claim_the_ids_follow_the_claim_and_outside_they_are_time_ordered() {
        let ids = ClaimIds { tag: ClaimIds::new_tag(), generation: 3 };
        let made = with_claim_ids(ids, async { [TimeOrderedEventIds.next_id(), TimeOrderedEventIds.next_id()] }).await;
        assert_eq!(made, [ids.id(0), ids.id(1)]);
        assert_eq!(TimeOrderedEventIds.next_id().get_version_num(), 7);
    }
}
