//! Container labels from containerd's API (`containers.v1.Containers/Get` in one containerd
//! namespace, `k8s.io` for the containers the kubelet creates through CRI), over its unix
//! socket. The gRPC client runs on a thread of its own, with its own single-threaded runtime:
//! the scan and the HTTP handlers ask from any thread, async or not, and wait at most
//! [`ANSWER_TIMEOUT`].

use std::{
    path::{Path, PathBuf},
    sync::mpsc,
    time::Duration,
};

use containerd_client::{
    services::v1::{GetContainerRequest, containers_client::ContainersClient},
    tonic::{Code, Request, transport::Channel},
};

use super::{LabelAnswer, LabelError, LabelSource};

/// The longest a question waits for containerd (a local socket answers in milliseconds).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// One question to the client thread: a container id and where to send the answer.
type Question = (String, mpsc::Sender<Answer>);
type Answer = LabelAnswer;

/// Asks containerd at `socket`, in containerd namespace `namespace`, for containers' labels.
/// Connects on the first question, and again after an error.
#[derive(Debug)]
pub struct Containerd {
    socket: PathBuf,
    namespace: String,
    /// The client thread's inbox; started on the first question.
    questions: Option<mpsc::Sender<Question>>,
}

impl Containerd {
    /// A source asking containerd's socket `socket` (`[kubernetes] containerd_socket`) about
    /// containers of `namespace` (`containerd_namespace`). Touches nothing until asked.
    #[must_use]
    pub fn new(socket: PathBuf, namespace: String) -> Self {
        Self {
            socket,
            namespace,
            questions: None,
        }
    }

    fn client_thread(&mut self) -> Result<&mpsc::Sender<Question>, LabelError> {
        if self.questions.is_none() {
            let (tx, rx) = mpsc::channel::<Question>();
            let (socket, namespace) = (self.socket.clone(), self.namespace.clone());
            std::thread::Builder::new()
                .name("containerd".into())
                .spawn(move || serve(&socket, &namespace, &rx))
                .map_err(|e| LabelError::Failed(format!("cannot start its client thread: {e}")))?;
            self.questions = Some(tx);
        }
        Ok(self.questions.as_ref().expect("set above"))
    }
}

impl LabelSource for Containerd {
    fn labels(&mut self, id: &str) -> LabelAnswer {
        if !self.socket.exists() {
            return Err(LabelError::Absent(format!(
                "no containerd socket at {}",
                self.socket.display()
            )));
        }
        let (tx, rx) = mpsc::channel();
        let sent = self.client_thread()?.send((id.to_owned(), tx));
        if sent.is_err() {
            // The thread ended (it cannot build its runtime): start another next time.
            self.questions = None;
            return Err(LabelError::Failed("containerd client thread ended".into()));
        }
        rx.recv_timeout(ANSWER_TIMEOUT).unwrap_or_else(|_| {
            Err(LabelError::Failed(format!(
                "containerd at {} did not answer within {}s",
                self.socket.display(),
                ANSWER_TIMEOUT.as_secs()
            )))
        })
    }
}

/// The client thread: answers questions until the source is dropped, keeping one connection.
fn serve(socket: &Path, namespace: &str, questions: &mpsc::Receiver<Question>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::warn!("containerd client: cannot build its runtime: {error}");
            return;
        }
    };
    let mut client: Option<ContainersClient<Channel>> = None;
    for (id, answer) in questions {
        let result = runtime.block_on(async {
            tokio::time::timeout(ANSWER_TIMEOUT, get(&mut client, socket, namespace, &id))
                .await
                .unwrap_or_else(|_| Err(LabelError::Failed("timed out".into())))
        });
        if result.is_err() {
            client = None;
        }
        // The asker may have given up waiting: nothing to do then.
        let _ = answer.send(result);
    }
}

/// The labels of container `id`, connecting first when `client` is None.
async fn get(
    client: &mut Option<ContainersClient<Channel>>,
    socket: &Path,
    namespace: &str,
    id: &str,
) -> LabelAnswer {
    let failed = |what: &str, error: &dyn std::fmt::Display| {
        LabelError::Failed(format!(
            "containerd at {}: {what}: {error}",
            socket.display()
        ))
    };
    if client.is_none() {
        let channel = containerd_client::connect(socket)
            .await
            .map_err(|e| failed("cannot connect", &e))?;
        *client = Some(ContainersClient::new(channel));
    }
    let containers = client.as_mut().expect("connected above");
    let mut request = Request::new(GetContainerRequest { id: id.to_owned() });
    let namespace = namespace
        .parse()
        .map_err(|e| failed("namespace is no header value", &e))?;
    request
        .metadata_mut()
        .insert("containerd-namespace", namespace);
    match containers.get(request).await {
        Ok(response) => Ok(response.into_inner().container.map(|c| c.labels)),
        Err(status) if status.code() == Code::NotFound => Ok(None),
        Err(status) => Err(failed("get container", &status.message())),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn no_socket_is_absent_and_a_socket_that_is_no_containerd_fails() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock");
        let mut source = Containerd::new(socket.clone(), "k8s.io".into());
        let absent = source.labels("id").unwrap_err();
        assert!(matches!(absent, LabelError::Absent(_)), "{absent}");
        // Accepts and hangs up at once: no gRPC answer.
        let listener = UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            for stream in listener.incoming().take(2) {
                drop(stream);
            }
        });
        let started = std::time::Instant::now();
        let failed = source.labels("id").unwrap_err();
        assert!(matches!(failed, LabelError::Failed(_)), "{failed}");
        assert!(started.elapsed() <= ANSWER_TIMEOUT + Duration::from_millis(500));
        // The next question reconnects (the server takes a second connection).
        let again = source.labels("id").unwrap_err();
        assert!(matches!(again, LabelError::Failed(_)), "{again}");
        server.join().unwrap();
    }
}
