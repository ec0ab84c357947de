//! The SDK's embedded vCenter simulator (`vsphere-sim`), in-process, for a test.

use std::time::Duration;

use vsphere_client::client::{Client, ConnectOptions};
use vsphere_sim::Simulator;

/// A running embedded simulator; stopped when dropped.
#[derive(Debug)]
pub struct Sim {
    /// The simulator.
    pub sim: Simulator,
    /// The SDK URL with credentials.
    pub url: String,
}

impl Sim {
    /// Starts the simulator with `task_step` per task stage (1 ms keeps tests fast; the
    /// simulator's default is 10 ms).
    pub async fn start(task_step: Duration) -> Self {
        Self::start_with_login(task_step, None).await
    }

    /// [`Sim::start`]; with `login`, only that user and password may log in.
    pub async fn start_with_login(task_step: Duration, login: Option<(String, String)>) -> Self {
        let mut builder = Simulator::builder().task_step(task_step);
        if let Some((user, password)) = login {
            builder = builder.user(&user).password(&password);
        }
        let sim = builder
            .start()
            .await
            .expect("start the embedded vsphere-sim");
        let url = sim.url_with_credentials();
        Self { sim, url }
    }

    /// A logged-in client.
    pub async fn client(&self) -> Client {
        let options = ConnectOptions::new(&self.url).expect("valid simulator URL");
        Client::connect(options)
            .await
            .expect("connect to the embedded vsphere-sim")
    }
}
