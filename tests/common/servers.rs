//! Real servers for the tests, started from their Debian packages (`.ci/test` installs
//! them) with their own configuration in a temporary directory, on free ports of
//! 127.0.0.1, waited for, and stopped on drop; and a private PKI for their TLS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpStream;

use super::probing::{free_port, path_str, run, write};

/// A temp dir the servers' unprivileged users can traverse.
pub fn shared_dir() -> Arc<TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    Arc::new(dir)
}

/// When a daemon is ready.
pub enum Ready<'a> {
    /// Every port accepts a TCP connection.
    Tcp(&'a [u16]),
    /// Its log has this line (UDP servers).
    Log(&'a str),
    /// This probe succeeds (UDP servers that log nothing).
    Probe(Value),
}

/// A server process of ours; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Server {
    name: &'static str,
    child: Child,
    log: PathBuf,
    _dir: Arc<TempDir>,
}

impl Server {
    /// Starts `command` with its output in `log`, and returns once it is `ready`.
    pub async fn start(
        name: &'static str,
        mut command: Command,
        dir: Arc<TempDir>,
        ready: Ready<'_>,
    ) -> Server {
        let log = dir.path().join(format!("{name}.{}.log", fastrand::u32(..)));
        let out = std::fs::File::create(&log).unwrap();
        command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} (see .ci/test): {e}"));
        let mut daemon = Server {
            name,
            child,
            log,
            _dir: dir,
        };
        let give_up = Instant::now() + Duration::from_secs(30);
        let wait = |what: &str, daemon: &mut Server| {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("{name} exited ({status}):\n{}", daemon.output());
            }
            assert!(
                Instant::now() < give_up,
                "{name} not ready ({what}):\n{}",
                daemon.output()
            );
        };
        match ready {
            Ready::Tcp(ports) => {
                for &port in ports {
                    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                        wait(&format!("port {port}"), &mut daemon);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            Ready::Probe(probe) => {
                while !run(probe.clone(), Duration::from_millis(300)).await.is_ok() {
                    wait("a first probe", &mut daemon);
                }
            }
            Ready::Log(line) => {
                while !daemon.output().contains(line) {
                    wait(line, &mut daemon);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        daemon
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let give_up = Instant::now() + Duration::from_secs(10);
        while Instant::now() < give_up {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} ignored SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private CA, a server certificate for `server` (and 127.0.0.1) and a client
/// certificate for `client`, as PEM files; the server's key readable by its owner only.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path, server: &str, client: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tocsin core test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let leaf = |name: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params =
                CertificateParams::new(vec![name.to_string(), "127.0.0.1".to_string()]).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (cert, key) = leaf(server);
        let (client_cert, client_key) = leaf(client);
        Pki {
            ca: write(dir, "ca.pem", &ca.pem()),
            cert: write(dir, "cert.pem", &cert),
            key: private(write(dir, "key.pem", &key)),
            client_cert: write(dir, "client.pem", &client_cert),
            client_key: write(dir, "client.key", &client_key),
        }
    }
}

/// Servers refuse a private key others can read (Dovecot and OpenSMTPD do).
fn private(path: PathBuf) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

// ---------------------------------------------------------------------------------------
// Exim: submission with STARTTLS and implicit TLS, AUTH, delivery to a Maildir
// ---------------------------------------------------------------------------------------

pub const SMTP_USER: &str = "probe@vm.example.net";
pub const SMTP_PASSWORD: &str = "subm1ssion secret";

pub struct Exim {
    pub submission: u16,
    pub implicit: u16,
    pub pki: Pki,
    pub dir: Arc<TempDir>,
    /// Where Exim delivers every message it accepts, one file each (Maildir `new/`).
    pub maildir: PathBuf,
    _daemon: Server,
}

impl Exim {
    /// Exim on `submission` (STARTTLS, 587-style) and `implicit` (TLS on connect,
    /// 465-style), with PLAIN and LOGIN authenticators for one user; `login_only` leaves
    /// PLAIN out. It takes mail from that user only, for any address, and delivers it to
    /// [`Exim::maildir`].
    pub async fn start(login_only: bool) -> Exim {
        let dir = shared_dir();
        let d = dir.path();
        let pki = Pki::new(d, "localhost", "client.invalid");
        let spool = d.join("spool");
        std::fs::create_dir(&spool).unwrap();
        let mail = d.join("mail");
        std::fs::create_dir(&mail).unwrap();
        let chown = Command::new("chown")
            .arg("Debian-exim:Debian-exim")
            .args([&spool, &mail, &pki.key])
            .status()
            .unwrap();
        assert!(chown.success());
        let (submission, implicit) = (free_port(), free_port());
        let check = |user: &str, pass: &str| {
            format!(
                "${{if and {{{{eq{{{user}}}{{{SMTP_USER}}}}}{{eq{{{pass}}}{{{SMTP_PASSWORD}}}}}}}}}"
            )
        };
        let plain = format!(
            "plain:\n  driver = plaintext\n  public_name = PLAIN\n  server_prompts = :\n  \
             server_condition = {}\n  server_set_id = $auth2\n",
            check("$auth2", "$auth3")
        );
        let login = format!(
            "login:\n  driver = plaintext\n  public_name = LOGIN\n  \
             server_prompts = Username:: : Password::\n  server_condition = {}\n  \
             server_set_id = $auth1\n",
            check("$auth1", "$auth2")
        );
        let config = write(
            d,
            "exim.conf",
            &format!(
                "primary_hostname = localhost\n\
                 spool_directory = {spool}\n\
                 log_file_path = {spool}/%slog\n\
                 pid_file_path = {spool}/exim.pid\n\
                 keep_environment =\n\
                 daemon_smtp_ports = {submission} : {implicit}\n\
                 tls_on_connect_ports = {implicit}\n\
                 local_interfaces = <; 127.0.0.1.{submission} ; 127.0.0.1.{implicit}\n\
                 tls_certificate = {cert}\n\
                 tls_privatekey = {key}\n\
                 tls_advertise_hosts = *\n\
                 auth_advertise_hosts = ${{if eq{{$tls_in_cipher}}{{}}{{}}{{*}}}}\n\
                 acl_smtp_rcpt = rcpt\n\
                 begin acl\n\
                 rcpt:\n  accept authenticated = *\n  deny message = authenticate first\n\
                 begin routers\n\
                 everyone:\n  driver = accept\n  transport = maildir\n\
                 begin transports\n\
                 maildir:\n  driver = appendfile\n  directory = {mail}/Maildir\n  \
                 maildir_format\n  user = Debian-exim\n  group = Debian-exim\n  mode = 0644\n\
                 begin authenticators\n{plain}{login}",
                mail = path_str(&mail),
                spool = path_str(&spool),
                cert = path_str(&pki.cert),
                key = path_str(&pki.key),
                plain = if login_only { "" } else { plain.as_str() },
            ),
        );
        let mut command = Command::new("/usr/sbin/exim4");
        command.arg("-bdf").arg("-C").arg(&config);
        let ready = Ready::Tcp(&[submission, implicit]);
        let daemon = Server::start("exim", command, dir.clone(), ready).await;
        Exim {
            submission,
            implicit,
            pki,
            dir,
            maildir: mail.join("Maildir/new"),
            _daemon: daemon,
        }
    }

    /// The messages delivered so far, raw, oldest first.
    pub fn delivered(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.maildir) else {
            return Vec::new();
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .map(|e| e.unwrap().path())
            .map(|p| (std::fs::metadata(&p).unwrap().modified().unwrap(), p))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, p)| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    /// Exim's main log, for a failed assertion.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("spool/mainlog")).unwrap_or_default()
    }

    pub fn probe(&self, implicit: bool, password: &str) -> Value {
        let file = write(
            self.dir.path(),
            &format!("pw-{}", fastrand::u32(..)),
            password,
        );
        let (port, tls) = match implicit {
            true => (self.implicit, "implicit"),
            false => (self.submission, "starttls"),
        };
        json!({ "type": "smtp", "address": format!("127.0.0.1:{port}"), "tls": tls,
                "ca_file": path_str(&self.pki.ca), "username": SMTP_USER,
                "password_file": path_str(&file) })
    }
}
