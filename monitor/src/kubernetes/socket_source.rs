//! A [`LabelSource`] asking a container runtime's gRPC API on a unix socket: containerd's own
//! ([`super::containerd`]) or the CRI ([`super::cri`]). The gRPC client runs on a thread of its
//! own, with its own single-threaded runtime: the scan and the HTTP handlers ask from any thread,
//! async or not, and wait at most [`ANSWER_TIMEOUT`].

use std::{
    path::{Path, PathBuf},
    sync::mpsc,
    time::Duration,
};

use super::{LabelAnswer, LabelError, LabelSource, Labels};

/// The longest a question waits for the runtime (a local socket answers in milliseconds).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// One runtime API: how to connect on a socket and ask one container's labels.
pub trait RuntimeApi: Clone + Send + 'static {
    /// The connected client, kept between questions and dropped after an error.
    type Client;
    /// What errors call the runtime: `containerd`, `CRI runtime`.
    const NAME: &'static str;

    /// A client connected to `socket`.
    ///
    /// # Errors
    /// One line: what failed and why (`cannot connect: …`).
    fn connect(
        &self,
        socket: &Path,
    ) -> impl std::future::Future<Output = Result<Self::Client, String>>;

    /// The labels of container `id`: None when the runtime does not know it.
    ///
    /// # Errors
    /// One line: what failed and why.
    fn labels(
        &self,
        client: &mut Self::Client,
        id: &str,
    ) -> impl std::future::Future<Output = Result<Option<Labels>, String>>;
}

/// A gRPC channel to the unix socket `socket`, for a [`RuntimeApi::connect`].
///
/// # Errors
/// `cannot connect: …`.
pub async fn channel(
    socket: &Path,
) -> Result<containerd_client::tonic::transport::Channel, String> {
    // containerd-client's connector is plain gRPC over a unix socket: nothing in it is
    // containerd's, so the CRI client uses it too.
    containerd_client::connect(socket)
        .await
        .map_err(|e| format!("cannot connect: {e}"))
}

/// One question to the client thread: a container id and where to send the answer.
type Question = (String, mpsc::Sender<LabelAnswer>);

/// Asks the runtime API `A` on unix socket `socket` for containers' labels. Connects on the
/// first question, and again after an error.
#[derive(Debug)]
pub struct SocketSource<A: RuntimeApi> {
    socket: PathBuf,
    api: A,
    /// The client thread's inbox; started on the first question.
    questions: Option<mpsc::Sender<Question>>,
}

impl<A: RuntimeApi> SocketSource<A> {
    /// A source asking `api` on `socket`. Touches nothing until asked.
    #[must_use]
    pub fn new(socket: PathBuf, api: A) -> Self {
        Self {
            socket,
            api,
            questions: None,
        }
    }

    /// The socket asked.
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn client_thread(&mut self) -> Result<&mpsc::Sender<Question>, LabelError> {
        if self.questions.is_none() {
            let (tx, rx) = mpsc::channel::<Question>();
            let (socket, api) = (self.socket.clone(), self.api.clone());
            std::thread::Builder::new()
                .name(A::NAME.replace(' ', "-"))
                .spawn(move || serve(&api, &socket, &rx))
                .map_err(|e| LabelError::Failed(format!("cannot start its client thread: {e}")))?;
            self.questions = Some(tx);
        }
        Ok(self.questions.as_ref().expect("set above"))
    }
}

impl<A: RuntimeApi> LabelSource for SocketSource<A> {
    fn labels(&mut self, id: &str) -> LabelAnswer {
        let name = A::NAME;
        if !self.socket.exists() {
            return Err(LabelError::Absent(format!(
                "no {name} socket at {}",
                self.socket.display()
            )));
        }
        let (tx, rx) = mpsc::channel();
        let sent = self.client_thread()?.send((id.to_owned(), tx));
        if sent.is_err() {
            // The thread ended (it cannot build its runtime): start another next time.
            self.questions = None;
            return Err(LabelError::Failed(format!("{name} client thread ended")));
        }
        rx.recv_timeout(ANSWER_TIMEOUT).unwrap_or_else(|_| {
            Err(LabelError::Failed(format!(
                "{name} at {} did not answer within {}s",
                self.socket.display(),
                ANSWER_TIMEOUT.as_secs()
            )))
        })
    }
}

/// The client thread: answers questions until the source is dropped, keeping one connection.
fn serve<A: RuntimeApi>(api: &A, socket: &Path, questions: &mpsc::Receiver<Question>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::warn!("{} client: cannot build its runtime: {error}", A::NAME);
            return;
        }
    };
    let mut client: Option<A::Client> = None;
    for (id, answer) in questions {
        let result = runtime.block_on(async {
            tokio::time::timeout(ANSWER_TIMEOUT, ask(api, &mut client, socket, &id))
                .await
                .unwrap_or_else(|_| Err("timed out".into()))
        });
        if result.is_err() {
            client = None;
        }
        let result = result.map_err(|error| {
            LabelError::Failed(format!("{} at {}: {error}", A::NAME, socket.display()))
        });
        // The asker may have given up waiting: nothing to do then.
        let _ = answer.send(result);
    }
}

/// The labels of container `id`, connecting first when `client` is None.
async fn ask<A: RuntimeApi>(
    api: &A,
    client: &mut Option<A::Client>,
    socket: &Path,
    id: &str,
) -> Result<Option<Labels>, String> {
    if client.is_none() {
        *client = Some(api.connect(socket).await?);
    }
    api.labels(client.as_mut().expect("connected above"), id)
        .await
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;
    use crate::kubernetes::{containerd::Containerd, cri::Cri};

    /// Asks `source` with no socket, then with a socket that accepts and hangs up at once (no
    /// gRPC answer), twice (the second question reconnects).
    fn absent_then_failing(mut source: impl LabelSource, socket: &Path) {
        let absent = source.labels("id").unwrap_err();
        assert!(matches!(absent, LabelError::Absent(_)), "{absent}");
        let listener = UnixListener::bind(socket).unwrap();
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

    #[test]
    fn no_socket_is_absent_and_a_socket_that_is_no_runtime_fails() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock");
        absent_then_failing(
            Containerd::in_namespace(socket.clone(), "k8s.io".into()),
            &socket,
        );
        let socket = dir.path().join("crio.sock");
        absent_then_failing(Cri::at(socket.clone()), &socket);
    }
}
