//! Convergence, proven by property tests.
//!
//! - TP1: two replicas of a random base state each make a random changeset; each integrates the
//!   other's: both end equal.
//! - Histories: 2 to 5 clients make random transactions (every instruction kind, over a small key
//!   space so conflicts are frequent) with random upload/download/sync schedules; after a final
//!   full sync every client equals the server, and the server equals its history replayed from
//!   scratch. For up to 3 clients, every permutation of the upload order inside sync steps gives
//!   the same state.
//!
//! `OBJSYNC_CASES` sets the number of random histories (default 5,000 for the history test).

use objsync_testkit::cases;

use objsync::{PeerId, Replica};
use objsync_testkit::history::{history, run, state, Run, Step};
use proptest::prelude::*;

fn check_converged(run: &Run) -> Result<String, TestCaseError> {
    let s = state(run.server.replica());
    for (i, c) in run.clients.iter().enumerate() {
        prop_assert!(
            c.unacknowledged().is_empty(),
            "client {} still has unacknowledged changesets",
            i + 1
        );
        prop_assert_eq!(&state(c.replica()), &s, "client {} diverged", i + 1);
    }
    let mut replay = Replica::new(PeerId(0));
    for (_, e) in run.server.history().iter() {
        replay.apply_changeset(&e.changeset).unwrap();
    }
    prop_assert_eq!(&state(&replay), &s, "replaying the history differs");
    Ok(s)
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(5000), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_converge((n, steps) in history(5)) {
        let identity: Vec<usize> = (0..n).collect();
        let first = run(n, &steps, &identity);
        check_converged(&first)?;
        if n <= 3 {
            // A partial download after a sync sees a different prefix of the history in each
            // order, so what the client writes next depends on the order by construction. Compare
            // orders on the same history with whole downloads.
            let whole: Vec<Step> = steps
                .iter()
                .map(|st| match st {
                    Step::Download(c, _) => Step::Download(*c, None),
                    other => other.clone(),
                })
                .collect();
            let s = check_converged(&run(n, &whole, &identity))?;
            for order in permutations(n) {
                let other = run(n, &whole, &order);
                let t = check_converged(&other)?;
                prop_assert_eq!(&t, &s, "upload order {:?} changes the result", order);
            }
        }
    }
}
