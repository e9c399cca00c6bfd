//! How many partitions a member should hold: the floor or ceiling of an even spread.

/// What a member should do to move towards an even spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ShareAction {
    Release(usize),
    Acquire(usize),
    Hold,
}

/// With `partitions` over `others.len() + 1` members, every member should hold the floor or
/// the ceiling of the even share. Above the ceiling, release; above the floor while a peer is
/// below it, release down to the floor; otherwise take free partitions up to the ceiling —
/// but a member already at the floor leaves them to starved peers.
pub(super) fn plan_share(partitions: u32, counted: usize, others: &[usize]) -> ShareAction {
    let members = others.len() + 1;
    let floor = partitions as usize / members;
    let ceiling = (partitions as usize).div_ceil(members);
    let someone_starved = others.iter().any(|c| *c < floor);
    // Free as far as the (possibly slightly stale) heartbeats tell: no point trying to take
    // partitions when all are held.
    let free = (partitions as usize).saturating_sub(counted + others.iter().sum::<usize>());
    if counted > ceiling {
        ShareAction::Release(counted - ceiling)
    } else if counted > floor && someone_starved {
        ShareAction::Release(counted - floor)
    } else if free > 0 && (counted < floor || (counted < ceiling && !someone_starved)) {
        ShareAction::Acquire((ceiling - counted).min(free))
    } else {
        ShareAction::Hold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates rounds where releases take effect at once and free partitions go to
    /// members in order; the spread must settle at floor/ceiling for each member.
    fn settle(partitions: u32, mut counts: Vec<usize>) -> Vec<usize> {
        for _ in 0..20 {
            for member in 0..counts.len() {
                let others: Vec<usize> = counts
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != member)
                    .map(|(_, c)| *c)
                    .collect();
                let free = partitions as usize - counts.iter().sum::<usize>();
                match plan_share(partitions, counts[member], &others) {
                    ShareAction::Release(n) => counts[member] -= n,
                    ShareAction::Acquire(n) => counts[member] += n.min(free),
                    ShareAction::Hold => {}
                }
            }
        }
        counts
    }

    #[test]
    fn spreads_evenly_as_members_join() {
        assert_eq!(settle(16, vec![16, 0, 0]).iter().sum::<usize>(), 16);
        let mut three = settle(16, vec![16, 0, 0]);
        three.sort();
        assert_eq!(three, [5, 5, 6]);
        let mut two = settle(16, vec![16, 0]);
        two.sort();
        assert_eq!(two, [8, 8]);
        assert_eq!(settle(16, vec![0]), [16]);
        let mut many = settle(16, vec![0, 0, 0, 0, 0]);
        many.sort();
        assert_eq!(many, [3, 3, 3, 3, 4]);
    }

    #[test]
    fn holds_when_balanced() {
        assert_eq!(plan_share(16, 5, &[5, 6]), ShareAction::Hold);
        assert_eq!(plan_share(16, 6, &[5, 5]), ShareAction::Hold);
        assert_eq!(plan_share(16, 6, &[6, 4]), ShareAction::Release(1));
        assert_eq!(
            plan_share(16, 4, &[6, 6]),
            ShareAction::Hold,
            "nothing free: wait for peers to release"
        );
        assert_eq!(plan_share(16, 4, &[6, 5]), ShareAction::Acquire(1));
    }
}
