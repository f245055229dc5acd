//! SIGKILL during a 16-worker run. Documented bound (docs/queues.md): a
//! message whose ack was answered is never delivered again; only messages
//! whose ack was in flight at the crash may be delivered once more; no
//! unacknowledged message is lost.

use crate::raw::{batch, Raw};
use crate::support::*;
use spool_proto::{self as p, Request, ResponseBody};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MESSAGES: usize = 4_000;
const WORKERS: usize = 16;

#[derive(Default)]
struct Ledger {
    /// Values whose ack was answered OK.
    acked: HashSet<String>,
    /// Values whose ack was sent but not (yet) answered: at a crash these may
    /// or may not have been recorded — the documented bound.
    ack_in_flight: HashSet<String>,
    /// Every delivery: value → count.
    delivered: HashMap<String, u32>,
    /// Values delivered after the restart.
    after_restart: Vec<String>,
}

/// WORKERS worker threads against `server`, until the flag returned is set.
fn start_workers(
    server: &ServerProc,
    ledger: &Arc<Mutex<Ledger>>,
    restarted: bool,
) -> (Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let threads = (0..WORKERS)
        .map(|_| {
            let (addr, stop, ledger) = (server.addr.clone(), stop.clone(), ledger.clone());
            std::thread::spawn(move || worker(addr, stop, ledger, restarted))
        })
        .collect();
    (stop, threads)
}

fn worker(addr: String, stop: Arc<AtomicBool>, ledger: Arc<Mutex<Ledger>>, restarted: bool) {
    let Ok(stream) = std::net::TcpStream::connect(&addr) else {
        return;
    };
    drop(stream);
    let mut raw = Raw::connect(&addr);
    while !stop.load(Ordering::Relaxed) {
        let cid = raw.send(&Request::Receive(p::Receive {
            topic: "jobs".into(),
            name: "w".into(),
            max: 8,
            wait_ms: 200,
        }));
        let Ok((got, r)) = raw.receive() else { return };
        assert_eq!(got, cid);
        let Ok(ResponseBody::Messages(msgs)) = r.into_result() else {
            return;
        };
        if msgs.is_empty() {
            if restarted && done(&ledger.lock().unwrap(), &HashSet::new()) {
                return;
            }
            continue;
        }
        let values: Vec<String> = msgs
            .iter()
            .map(|m| String::from_utf8(m.value.clone().unwrap().to_vec()).unwrap())
            .collect();
        {
            let mut l = ledger.lock().unwrap();
            for v in &values {
                *l.delivered.entry(v.clone()).or_default() += 1;
                if restarted {
                    l.after_restart.push(v.clone());
                }
            }
        }
        let receipts: Vec<String> = msgs.iter().map(|m| m.receipt.clone()).collect();
        ledger
            .lock()
            .unwrap()
            .ack_in_flight
            .extend(values.iter().cloned());
        let cid = raw.send(&Request::Ack(p::Ack {
            topic: "jobs".into(),
            name: "w".into(),
            receipts,
        }));
        let Ok((got, r)) = raw.receive() else { return };
        assert_eq!(got, cid);
        if let Ok(ResponseBody::Acked(codes)) = r.into_result() {
            let mut l = ledger.lock().unwrap();
            for (v, code) in values.iter().zip(codes) {
                l.ack_in_flight.remove(v);
                if code.is_none() {
                    l.acked.insert(v.clone());
                }
            }
        }
    }
}

/// Every message is acknowledged, counting acks in flight at the kill
/// (recorded by the server but never answered) as acknowledged.
fn done(l: &Ledger, in_flight_at_kill: &HashSet<String>) -> bool {
    l.acked.len() + in_flight_at_kill.difference(&l.acked).count() >= MESSAGES
}

#[test]
fn sigkill_during_a_sixteen_worker_run_redelivers_nothing_acknowledged() {
    let (dir, mut server) = start_after(&[
        "topic create jobs --partitions 4",
        "subscription create jobs w --kind queue --ack-timeout-ms 2000 --max-deliveries 0",
    ]);
    let mut producer = Raw::connect(&server.addr);
    for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(100) {
        let records: Vec<(String, String)> = chunk
            .iter()
            .map(|i| (format!("k{i}"), format!("m{i}")))
            .collect();
        let r = producer.call(&Request::Produce(p::Produce {
            topic: "jobs".into(),
            routing: p::Routing::Spread,
            batch: batch(&records),
        }));
        assert!(r.result().is_ok(), "{r:?}");
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (stop, threads) = start_workers(&server, &ledger, false);
    // Kill once a good part (not all) is acknowledged.
    for _ in 0..200 {
        if ledger.lock().unwrap().acked.len() > MESSAGES / 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let acked_before: HashSet<String> = ledger.lock().unwrap().acked.clone();
    let in_flight_at_kill: HashSet<String> =
        std::mem::take(&mut ledger.lock().unwrap().ack_in_flight);
    assert!(
        !acked_before.is_empty() && acked_before.len() < MESSAGES,
        "kill landed at {}",
        acked_before.len()
    );

    let server = ServerProc::start(dir.path());
    let (stop, threads) = start_workers(&server, &ledger, true);
    for _ in 0..600 {
        if done(&ledger.lock().unwrap(), &in_flight_at_kill) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let l = ledger.lock().unwrap();
    let redelivered_acked: Vec<&String> = l
        .after_restart
        .iter()
        .filter(|v| acked_before.contains(*v))
        .collect();
    assert!(
        redelivered_acked.is_empty(),
        "{} acknowledged messages came back: {:?}",
        redelivered_acked.len(),
        &redelivered_acked[..redelivered_acked.len().min(5)]
    );
    let settled: HashSet<&String> = l.acked.iter().chain(in_flight_at_kill.iter()).collect();
    assert_eq!(settled.len(), MESSAGES, "unacknowledged messages were lost");
    let in_flight_back = l
        .after_restart
        .iter()
        .filter(|v| in_flight_at_kill.contains(*v))
        .count();
    eprintln!(
        "acked before kill: {}, acks in flight at the kill: {} ({} of them delivered again), delivered after restart: {}",
        acked_before.len(),
        in_flight_at_kill.len(),
        in_flight_back,
        l.after_restart.len()
    );
}
