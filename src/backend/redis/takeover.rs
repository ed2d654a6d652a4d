//! Leases and takeover: entries being processed here have their idle time reset every
//! `LEASE_TICK` (`XCLAIM … JUSTID`) by a task of its own, so no other upkeep can delay a
//! renewal; and entries idle past `LEASE` in other consumers' pending lists (a dead instance's)
//! are claimed and delivered here; one delivered too often without finishing is dead-lettered
//! instead.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::warn;

use super::queue::{RedisQueue, LEASE, LEASE_TICK};
use super::reads::{self, Entry};
use super::{commands, maintenance};
use crate::backend::Delivery;
use crate::clock::Timestamp;
use crate::metrics::DlqReason;
use crate::resp::Frame;
use crate::store::RequestState;

/// Renews the lease of the entries being processed here, every `LEASE_TICK`.
pub(super) async fn renew_leases_every_tick(q: Rc<RedisQueue>) {
    if !q.processes {
        return;
    }
    loop {
        monoio::time::sleep(LEASE_TICK).await;
        if q.cmd.is_up() {
            renew_leases(&q).await;
        }
    }
}

/// Takes over entries idle past the lease in dead consumers' pending lists (dead-lettering
/// those delivered too often), and refreshes the depth gauges.
pub(super) async fn leases_and_reclaim(q: Rc<RedisQueue>) {
    while !q.cmd.is_up() {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    q.create_group().await;
    if let Some(halt) = &q.halt_on_shard_mismatch {
        if !q.check_shard_count(halt).await {
            return;
        }
    }
    if q.check_durability {
        q.check_durability().await;
    }
    q.started.set(true);
    loop {
        monoio::time::sleep(LEASE_TICK).await;
        if !q.cmd.is_up() {
            continue;
        }
        // A stopped worker runs nothing more: what it would take over stays for the others.
        if q.processes && !q.stopping.get() {
            reclaim(&q).await;
        }
        maintenance::refresh_depth(&q).await;
        maintenance::expire_dead_letters(&q).await;
    }
}

/// Resets the idle time of the entries this shard is processing while its lease is certainly
/// held (past that, a renewal could take an entry back from a consumer that took it over).
async fn renew_leases(q: &RedisQueue) {
    let ids: Vec<Bytes> = q
        .in_flight
        .borrow()
        .iter()
        .filter(|(_, since)| since.elapsed() < q.lease_held)
        .map(|(id, _)| id.clone())
        .collect();
    if ids.is_empty() {
        return;
    }
    let renew = commands::renew(&q.keys.stream, &q.consumer, ids.iter().map(|b| &b[..]));
    let sent = Instant::now();
    match q.cmd.call(&renew).await {
        // The ids it names had their idle time reset; the others are no longer pending.
        Ok(Frame::Array(Some(renewed))) => {
            let mut in_flight = q.in_flight.borrow_mut();
            for id in renewed.iter().filter_map(Frame::as_bytes) {
                if let Some(since) = in_flight.get_mut(id) {
                    *since = sent;
                }
            }
        }
        Ok(_) => warn!("unexpected lease renewal reply"),
        Err(e) => warn!(error = %e, "lease renewal failed"),
    }
}

/// Dead-letters `d`, delivered `deliveries` times without ever finishing: a job that keeps
/// killing (or outliving) its consumer is not delivered again. `d` is in flight here.
pub(super) async fn dead_letter_poison(q: &RedisQueue, mut d: Delivery, deliveries: u32) {
    d.attempt = d.attempt.max(deliveries);
    warn!(correlation_id = %d.job.id, deliveries, "delivered too often without finishing; dead-lettering");
    let reason = "delivered too many times without finishing";
    let now = Timestamp::now();
    let state = RequestState {
        status: crate::store::Status::Failed,
        submitted_at: d.job.submitted_at,
        updated_at: now,
        outcome: Some(Box::new(crate::store::Outcome {
            result: None,
            headers: None,
            status_code: None,
            error: Some(reason.to_owned()),
            processing_time_ms: 0,
            completed_at: now,
        })),
    };
    q.dead_letter(d, Some(&state), DlqReason::MaxRetries, reason)
        .await;
}

/// Claims entries idle past `LEASE` in any consumer's pending list (at most 50 per pass).
async fn reclaim(q: &RedisQueue) {
    let idle_ms = LEASE.as_millis() as u64;
    let pending = q
        .cmd
        .call(&commands::xpending_idle(&q.keys.stream, idle_ms, 50))
        .await;
    let Ok(Frame::Array(Some(rows))) = pending else {
        return;
    };
    for row in rows {
        let Some(cols) = row.as_array() else { continue };
        let (Some(id), Some(Frame::Integer(deliveries))) =
            (cols.first().and_then(Frame::as_bytes), cols.get(3))
        else {
            continue;
        };
        if q.in_flight.borrow().contains_key(id) {
            continue;
        }
        let claimed_at = Instant::now();
        let claim = commands::xclaim(&q.keys.stream, &q.consumer, idle_ms, [&id[..]]);
        let claimed = q.cmd.call(&claim).await;
        let Ok(frame) = claimed else { continue };
        for e in reads::xclaim(&frame).unwrap_or_default() {
            match e {
                Entry::Job(mut d) => {
                    d.redelivered = true;
                    // The claim is one more delivery than the count read before it.
                    if *deliveries as u64 >= u64::from(q.max_deliveries) {
                        q.in_flight
                            .borrow_mut()
                            .insert(d.entry_id.clone().unwrap_or_default(), claimed_at);
                        dead_letter_poison(q, d, *deliveries as u32 + 1).await;
                    } else {
                        // In flight from now on: its lease is renewed while it waits for a slot,
                        // and the next reclaim pass does not take it again.
                        if let Some(id) = &d.entry_id {
                            q.in_flight.borrow_mut().insert(id.clone(), claimed_at);
                        }
                        if q.stopping.get() {
                            // The worker stopped during the claim: no slot will take it here.
                            q.give_back(vec![d]).await;
                        } else {
                            q.reclaimed.borrow_mut().push_back(d);
                        }
                    }
                }
                Entry::Unreadable(id) => {
                    let ack = commands::xack(&q.keys.stream, [&id[..]]);
                    let _ = q.cmd.call(&ack).await;
                }
            }
        }
    }
}
