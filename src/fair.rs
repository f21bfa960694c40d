//! Fair shares of the CPU between clients. Face work (decoding a photo, running the networks on
//! it) runs a job per core; jobs beyond that wait. A plain queue serves them in arrival order,
//! so a client with many requests in flight, each of many frames, makes everyone else wait
//! behind all of them. [`FairPermits`] serves the waiting job of the client that holds the
//! fewest permits first and, among those, of the client served longest ago (in arrival order
//! for one client): a client with nothing running gets the next free core, however much others
//! have queued, and clients with work queued take turns.
//!
//! Which client a job belongs to is the request's, set once per request by the HTTP edge with
//! [`as_client`] and read where the job waits for its permit; work outside a request (the
//! command line, start-up) belongs to no client, which counts as one client of its own.
//!
//! Bulk work (the frames of a liveness answer, marked with [`as_bulk`]) may hold every permit
//! but one: however many answers are in flight, the last core stays for single photos, so a
//! login or an enrolment never waits behind a burst of large frames. One answer's frames are
//! analysed one after another, so a lone answer loses nothing; with one core there is nothing
//! to keep, and bulk work may hold it.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use tokio::sync::oneshot;

use crate::tally::Tally;

type Client = Option<IpAddr>;

tokio::task_local! {
    static CLIENT: Client;
    static BULK: bool;
}

/// Runs `work` on behalf of `client` (its address, if known).
pub async fn as_client<F: Future>(client: Client, work: F) -> F::Output {
    CLIENT.scope(client, work).await
}

fn current_client() -> Client {
    CLIENT.try_with(|c| *c).ok().flatten()
}

/// Runs `work` as bulk work: its jobs leave the last permit to others.
pub async fn as_bulk<F: Future>(work: F) -> F::Output {
    BULK.scope(true, work).await
}

fn current_is_bulk() -> bool {
    BULK.try_with(|b| *b).unwrap_or(false)
}

/// A fixed number of permits, handed to waiting clients fairly.
pub struct FairPermits {
    state: Mutex<State>,
}

struct State {
    free: usize,
    /// Permits bulk work holds, and the most it may.
    bulk_held: usize,
    max_bulk: usize,
    held: Tally<Client>,
    waiting: VecDeque<Waiter>,
    /// Permits granted so far, and the count when each client was last granted one.
    grants: u64,
    last_grant: HashMap<Client, u64>,
}

impl State {
    /// Whether a job of this kind may have a free permit now.
    fn may_grant(&self, bulk: bool) -> bool {
        self.free > 0 && (!bulk || self.bulk_held < self.max_bulk)
    }

    fn grant(&mut self, client: Client, bulk: bool) {
        self.free -= 1;
        self.bulk_held += usize::from(bulk);
        self.held.add(client);
        self.grants += 1;
        if self.last_grant.len() >= 10_000 {
            // Forget the clients served longest ago; they rank first again, as new ones do.
            let recent = self.grants.saturating_sub(1_000);
            self.last_grant.retain(|_, at| *at >= recent);
        }
        self.last_grant.insert(client, self.grants);
    }

    fn take_back(&mut self, client: Client, bulk: bool) {
        self.free += 1;
        self.bulk_held -= usize::from(bulk);
        self.held.take(&client);
    }
}

struct Waiter {
    client: Client,
    bulk: bool,
    hand_over: oneshot::Sender<FairPermit>,
}

/// One permit, given back when dropped.
pub struct FairPermit {
    owner: Arc<FairPermits>,
    client: Client,
    bulk: bool,
    counted: bool,
}

impl FairPermits {
    pub fn new(permits: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                free: permits,
                bulk_held: 0,
                max_bulk: permits.saturating_sub(1).max(1),
                held: Tally::default(),
                waiting: VecDeque::new(),
                grants: 0,
                last_grant: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A permit for the current request's client, once one is free and no client holding fewer
    /// permits waits for it (bulk work: and the permit is not the last).
    pub async fn acquire(self: &Arc<Self>) -> FairPermit {
        self.acquire_for(current_client(), current_is_bulk()).await
    }

    async fn acquire_for(self: &Arc<Self>, client: Client, bulk: bool) -> FairPermit {
        let receive = {
            let mut state = self.lock();
            if state.may_grant(bulk) && state.waiting.is_empty() {
                state.grant(client, bulk);
                return FairPermit {
                    owner: self.clone(),
                    client,
                    bulk,
                    counted: true,
                };
            }
            let (hand_over, receive) = oneshot::channel();
            state.waiting.push_back(Waiter {
                client,
                bulk,
                hand_over,
            });
            // Bulk work may wait while a permit is free: this job may take it.
            self.hand_out(&mut state);
            receive
        };
        // The sender lives in the queue this `Arc` keeps alive, and is only ever used to send.
        receive
            .await
            .unwrap_or_else(|_| unreachable!("a waiter's sender is never dropped unsent"))
    }

    fn release(self: &Arc<Self>, client: Client, bulk: bool) {
        let mut state = self.lock();
        state.take_back(client, bulk);
        self.hand_out(&mut state);
    }

    /// Gives free permits to the waiters that may have them: fewest held first, then served
    /// longest ago. Afterwards no permit is free or nobody waits who may take one, so a job
    /// arriving to a free permit and an empty queue may take it at once.
    fn hand_out(self: &Arc<Self>, state: &mut State) {
        state.waiting.retain(|w| !w.hand_over.is_closed());
        while state.free > 0 {
            let rank = |c: &Client| {
                (
                    state.held.get(c),
                    state.last_grant.get(c).copied().unwrap_or(0),
                )
            };
            let Some(next) = state
                .waiting
                .iter()
                .enumerate()
                .filter(|(_, w)| !w.hand_over.is_closed() && state.may_grant(w.bulk))
                .min_by_key(|(i, w)| (rank(&w.client), *i))
                .map(|(i, _)| i)
            else {
                // Nobody left who may take a permit: abandoned waiters, or bulk work at its cap.
                state.waiting.retain(|w| !w.hand_over.is_closed());
                return;
            };
            let waiter = state.waiting.remove(next).expect("an index just found");
            state.grant(waiter.client, waiter.bulk);
            let permit = FairPermit {
                owner: self.clone(),
                client: waiter.client,
                bulk: waiter.bulk,
                counted: true,
            };
            if let Err(mut returned) = waiter.hand_over.send(permit) {
                // Abandoned since the check: take the permit back here, not in its drop (which
                // would lock the state this holds).
                returned.counted = false;
                state.take_back(waiter.client, waiter.bulk);
            }
        }
    }
}

impl Drop for FairPermit {
    fn drop(&mut self) {
        if self.counted {
            self.owner.release(self.client, self.bulk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Client {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    /// Spawns a waiter for `client`; returns when it got its permit (and the permit).
    fn wait(permits: &Arc<FairPermits>, client: Client) -> tokio::task::JoinHandle<FairPermit> {
        let permits = permits.clone();
        tokio::spawn(async move { permits.acquire_for(client, false).await })
    }

    /// Spawns a waiter for bulk work of `client`, through the task-local mark.
    fn wait_bulk(
        permits: &Arc<FairPermits>,
        client: Client,
    ) -> tokio::task::JoinHandle<FairPermit> {
        let permits = permits.clone();
        tokio::spawn(as_client(
            client,
            as_bulk(async move { permits.acquire().await }),
        ))
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_client_with_nothing_running_goes_before_one_with_much_queued() {
        let permits = FairPermits::new(2);
        let busy = ip(1);
        let a = permits.acquire_for(busy, false).await;
        let b = permits.acquire_for(busy, false).await;
        let queued: Vec<_> = (0..10).map(|_| wait(&permits, busy)).collect();
        settle().await;
        let newcomer = wait(&permits, ip(2));
        settle().await;
        drop(a);
        let permit = newcomer.await.unwrap();
        assert_eq!(permit.client, ip(2), "served before ten queued jobs");
        // The busy client's jobs then run, in order, as permits come back.
        drop(permit);
        drop(b);
        let mut done = 0;
        for job in queued {
            drop(job.await.unwrap());
            done += 1;
        }
        assert_eq!(done, 10);
        let state = permits.lock();
        assert_eq!(
            (state.free, state.held.len(), state.waiting.len()),
            (2, 0, 0)
        );
    }

    #[tokio::test]
    async fn clients_with_work_queued_take_turns() {
        // Three busy clients on two permits: one of them always holds none, yet a newcomer is
        // served before the one that was served a moment ago.
        let permits = FairPermits::new(2);
        let a = permits.acquire_for(ip(1), false).await;
        let b = permits.acquire_for(ip(2), false).await;
        let third = wait(&permits, ip(3));
        settle().await;
        drop(a);
        let c = third.await.unwrap();
        let queued: Vec<_> = [1, 2, 3, 1, 2, 3]
            .into_iter()
            .map(|n| wait(&permits, ip(n)))
            .collect();
        settle().await;
        let newcomer = wait(&permits, ip(9));
        settle().await;
        drop(b);
        assert_eq!(newcomer.await.unwrap().client, ip(9));
        drop(c);
        for job in queued {
            drop(job.await.unwrap());
        }
    }

    #[tokio::test]
    async fn an_abandoned_waiter_neither_takes_nor_loses_a_permit() {
        let permits = FairPermits::new(1);
        let held = permits.acquire_for(ip(1), false).await;
        let gone = wait(&permits, ip(2));
        settle().await;
        gone.abort();
        let _ = gone.await;
        let next = wait(&permits, ip(3));
        settle().await;
        drop(held);
        assert_eq!(next.await.unwrap().client, ip(3));
        let state = permits.lock();
        assert_eq!(
            (state.free, state.held.len(), state.waiting.len()),
            (1, 0, 0)
        );
    }

    #[tokio::test]
    async fn bulk_work_leaves_the_last_permit_to_single_photos() {
        let permits = FairPermits::new(2);
        // Three clients' liveness frames: one runs, the others wait with a permit free.
        let bulk: Vec<_> = [1, 2, 3].map(|n| wait_bulk(&permits, ip(n))).into();
        settle().await;
        let finished: Vec<bool> = bulk.iter().map(|job| job.is_finished()).collect();
        assert_eq!(finished.iter().filter(|f| **f).count(), 1, "{finished:?}");
        assert_eq!(permits.lock().free, 1);
        // A single photo takes the free permit at once, ahead of the waiting frames.
        let photo = wait(&permits, ip(9));
        settle().await;
        assert!(photo.is_finished());
        let photo = photo.await.unwrap();
        assert!(!photo.bulk);
        // Each frame that ends lets the next in; the photo's permit goes back to the pool and
        // stays free for the next photo.
        drop(photo);
        settle().await;
        assert_eq!(permits.lock().free, 1);
        for job in bulk {
            let permit = job.await.unwrap();
            assert!(permit.bulk);
            drop(permit);
        }
        let state = permits.lock();
        assert_eq!(
            (state.free, state.bulk_held, state.waiting.len()),
            (2, 0, 0)
        );
    }

    #[tokio::test]
    async fn with_one_permit_bulk_work_may_hold_it() {
        let permits = FairPermits::new(1);
        let frame = wait_bulk(&permits, ip(1)).await.unwrap();
        let photo = wait(&permits, ip(2));
        settle().await;
        assert!(!photo.is_finished());
        drop(frame);
        assert_eq!(photo.await.unwrap().client, ip(2));
    }
}
