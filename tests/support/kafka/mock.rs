//! Owns a librdkafka mock cluster on a thread of its own. `MockCluster` holds a
//! raw pointer and is neither `Send` nor `Sync`; keeping it on one thread and
//! talking to it over a channel lets `Broker` stay shareable across tests.

use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use rdkafka::error::KafkaResult;
use rdkafka::mocking::MockCluster;

enum Command {
    CreateTopic {
        name: String,
        partitions: i32,
        done: mpsc::Sender<KafkaResult<()>>,
    },
}

pub struct MockHandle {
    /// Dropping the sender ends the thread, which destroys the cluster.
    commands: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl MockHandle {
    /// Starts a one-broker cluster; returns its handle and bootstrap servers.
    pub fn start() -> (MockHandle, String) {
        let (commands, inbox) = mpsc::channel();
        let (bootstrap_tx, bootstrap_rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let cluster = MockCluster::new(1).expect("librdkafka can create a mock cluster");
            bootstrap_tx
                .send(cluster.bootstrap_servers())
                .expect("the starting thread waits for the address");
            for command in inbox {
                match command {
                    Command::CreateTopic {
                        name,
                        partitions,
                        done,
                    } => {
                        let _ = done.send(cluster.create_topic(&name, partitions, 1));
                    }
                }
            }
        });
        let bootstrap = bootstrap_rx
            .recv()
            .expect("the mock cluster thread reports its address or panics");
        let handle = MockHandle {
            commands: Some(commands),
            thread: Some(thread),
        };
        (handle, bootstrap)
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        let (done, result) = mpsc::channel();
        self.commands
            .as_ref()
            .expect("commands is only taken in drop")
            .send(Command::CreateTopic {
                name: name.to_owned(),
                partitions,
                done,
            })
            .expect("the mock cluster thread lives as long as its handle");
        result
            .recv()
            .expect("the mock cluster thread answers every command")
            .unwrap_or_else(|error| panic!("mock CreateTopic {name}: {error}"));
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        drop(self.commands.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
