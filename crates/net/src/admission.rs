//! The connection caps: a permit per accepted connection, held by its socket until the socket
//! is closed (an upgraded WebSocket keeps it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::metrics::{ListenerMetrics, Refusal};

/// Counts open connections, globally and per IP address.
#[derive(Debug)]
pub(crate) struct Admission {
    max: usize,
    /// 0: no per-IP cap.
    max_per_ip: usize,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    metrics: Arc<ListenerMetrics>,
}

impl Admission {
    pub(crate) fn new(max: usize, max_per_ip: usize, metrics: Arc<ListenerMetrics>) -> Arc<Self> {
        Arc::new(Self {
            max,
            max_per_ip,
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// A permit for one more connection from `ip`, or the cap that refuses it.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Global);
        }
        if self.max_per_ip > 0 {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
            let count = per_ip.entry(ip).or_insert(0);
            if *count >= self.max_per_ip {
                drop(per_ip);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::PerIp);
            }
            *count += 1;
        }
        self.metrics.on_accepted();
        Ok(Permit {
            admission: Arc::clone(self),
            ip,
        })
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct Permit {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let admission = &self.admission;
        if admission.max_per_ip > 0 {
            let mut per_ip = admission
                .per_ip
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = per_ip.get_mut(&self.ip) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
        admission.open.fetch_sub(1, Ordering::AcqRel);
        admission.metrics.on_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_open_permits_and_free_them_on_drop() {
        let metrics = Arc::new(ListenerMetrics::default());
        let admission = Admission::new(3, 2, Arc::clone(&metrics));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = admission.admit(a).expect("first from a");
        let _a2 = admission.admit(a).expect("second from a");
        assert_eq!(admission.admit(a).unwrap_err(), Refusal::PerIp);
        let _b1 = admission.admit(b).expect("first from b");
        assert_eq!(admission.admit(b).unwrap_err(), Refusal::Global);
        assert_eq!(metrics.open(), 3);
        drop(a1);
        assert_eq!(metrics.open(), 2);
        let _a3 = admission.admit(a).expect("a's place is free again");
        assert_eq!(admission.per_ip.lock().unwrap().get(&a), Some(&2));
    }
}
