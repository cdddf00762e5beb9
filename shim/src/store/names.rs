//! Name reservations and in-flight creates (DESIGN.md decision 5).
//!
//! RunPodSandbox and CreateContainer reserve `name_namespace_uid_attempt`-style names
//! before doing any work. The work runs detached from the caller: when kubelet's deadline
//! passes, the create goes on, and kubelet's retry with the same name is handed the
//! result instead of "name is reserved".

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::error::{Error, Result};

/// Who holds a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub name: String,
    pub id: String,
}

type Outcome = Option<std::result::Result<String, Arc<Error>>>;

struct Flight {
    id: String,
    result: watch::Receiver<Outcome>,
    delivered: AtomicBool,
}

#[derive(Default)]
pub struct NameRegistry {
    owners: Mutex<HashMap<String, String>>,
    flights: Mutex<HashMap<String, Arc<Flight>>>,
}

impl NameRegistry {
    /// Reserve `name` for `id`; a name held by another id is AlreadyExists.
    pub fn reserve(&self, name: &str, id: &str) -> Result<Reservation> {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        match owners.get(name) {
            Some(owner) if owner != id => Err(Error::AlreadyExists(format!(
                "name {name:?} is reserved for {owner:?}"
            ))),
            _ => {
                owners.insert(name.to_string(), id.to_string());
                Ok(Reservation {
                    name: name.to_string(),
                    id: id.to_string(),
                })
            }
        }
    }

    /// Release `name` if `id` still holds it.
    pub fn release(&self, name: &str, id: &str) {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        if owners.get(name).is_some_and(|owner| owner == id) {
            owners.remove(name);
        }
    }

    pub fn owner(&self, name: &str) -> Option<String> {
        self.owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Run a create for `name` detached from the caller, or join the one already running
    /// (or finished but never delivered) under that name.
    ///
    /// `start` is called only when no create for the name is in flight; it reserves the
    /// name and returns the id plus the work to run.
    pub async fn create_once<F, Fut>(&self, name: &str, start: F) -> Result<String>
    where
        F: FnOnce() -> Result<(String, Fut)>,
        Fut: Future<Output = Result<String>> + Send + 'static,
    {
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            match flights.get(name) {
                Some(flight) => flight.clone(),
                None => {
                    let (id, work) = start()?;
                    let (tx, rx) = watch::channel(None);
                    let flight = Arc::new(Flight {
                        id,
                        result: rx,
                        delivered: AtomicBool::new(false),
                    });
                    flights.insert(name.to_string(), flight.clone());
                    tokio::spawn(async move {
                        let outcome = work.await.map_err(Arc::new);
                        let _ = tx.send(Some(outcome));
                    });
                    flight
                }
            }
        };
        let mut rx = flight.result.clone();
        let outcome = loop {
            if let Some(outcome) = rx.borrow().clone() {
                break outcome;
            }
            if rx.changed().await.is_err() {
                break Err(Arc::new(Error::Internal(format!(
                    "create of {name:?} ({}) ended without a result",
                    flight.id
                ))));
            }
        };
        // Delivered: a later call with this name is a duplicate, not a retry.
        flight.delivered.store(true, Ordering::SeqCst);
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if flights.get(name).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            flights.remove(name);
        }
        drop(flights);
        outcome.map_err(|e| e.duplicate())
    }
}

impl Error {
    /// A copy of a shared error, for every caller that joined the same create.
    pub fn duplicate(&self) -> Error {
        let message = self.to_string();
        match self.code() {
            tonic::Code::InvalidArgument => Error::InvalidArgument(message),
            tonic::Code::NotFound => Error::NotFound(message),
            tonic::Code::AlreadyExists => Error::AlreadyExists(message),
            tonic::Code::FailedPrecondition => Error::FailedPrecondition(message),
            tonic::Code::Unavailable => Error::Unavailable(message),
            tonic::Code::DeadlineExceeded => Error::DeadlineExceeded(message),
            tonic::Code::Unimplemented => Error::Unimplemented(message),
            tonic::Code::ResourceExhausted => Error::ResourceExhausted(message),
            _ => Error::Internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_name_has_one_owner() {
        let names = NameRegistry::default();
        names.reserve("pod_ns_uid_0", "a").unwrap();
        assert!(
            names.reserve("pod_ns_uid_0", "a").is_ok(),
            "same id may re-reserve"
        );
        let err = names.reserve("pod_ns_uid_0", "b").unwrap_err();
        assert!(matches!(err, Error::AlreadyExists(_)));
        names.release("pod_ns_uid_0", "b");
        assert_eq!(names.owner("pod_ns_uid_0").as_deref(), Some("a"));
        names.release("pod_ns_uid_0", "a");
        assert!(names.owner("pod_ns_uid_0").is_none());
    }

    #[tokio::test]
    async fn a_retry_joins_the_create_its_first_caller_abandoned() {
        let names = Arc::new(NameRegistry::default());
        let first = {
            let names = names.clone();
            tokio::spawn(async move {
                names
                    .create_once("n", || {
                        Ok(("id1".to_string(), async {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            Ok("id1".to_string())
                        }))
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        // kubelet's deadline passes: the first caller goes away, the work goes on.
        first.abort();
        let retry = names
            .create_once(
                "n",
                || -> Result<(String, std::future::Ready<Result<String>>)> {
                    Err(Error::Internal("must join, not start".into()))
                },
            )
            .await;
        assert_eq!(retry.unwrap(), "id1");
    }
}
