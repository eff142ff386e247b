//! The gateway's WireGuard identity: generated once from the kernel CSPRNG, persisted 0600 in
//! the state directory, reused on every start.
//!
//! Upstream generates a key in memory on every start, so each restart invalidates the public
//! key every peer has configured until the Gateway object is updated and re-synced. Keeping
//! the key makes a restart invisible to peers: they re-handshake with the same identity.
//!
//! The file holds the base64 private key and a newline, the format of `wg genkey`, so an
//! operator can inspect it with `wg pubkey < wireguard.key` or provision one. A file that is
//! readable by group or others, not a regular file, not owned by us, or not a valid key is
//! refused with an error that says so; it is never silently replaced (that would change the
//! published identity).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use boringtun::x25519::{PublicKey, StaticSecret};

use super::TunnelError;

/// File name of the private key inside the state directory.
pub const KEY_FILE: &str = "wireguard.key";

/// A loaded private key and its public half.
#[derive(Clone)]
pub struct KeyFile {
    secret: StaticSecret,
    public: PublicKey,
    path: PathBuf,
}

impl std::fmt::Debug for KeyFile {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("path", &self.path)
            .field("public", &encode(self.public.as_bytes()))
            .finish()
    }
}

impl KeyFile {
    /// Loads `<state_dir>/wireguard.key`, creating the directory (0700) and a fresh key (0600)
    /// when the file does not exist.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, TunnelError> {
        let path = state_dir.join(KEY_FILE);
        let io_err = |source| TunnelError::KeyIo {
            path: path.clone(),
            source,
        };
        match fs::symlink_metadata(&path) {
            Ok(meta) => Self::load(path.clone(), &meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !state_dir.exists() {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(state_dir)
                        .map_err(io_err)?;
                }
                let bytes = random_key().map_err(io_err)?;
                write_new(&path, &bytes).map_err(io_err)?;
                // Read back what is on disk: if another process won the race, use its key.
                let meta = fs::symlink_metadata(&path).map_err(io_err)?;
                Self::load(path.clone(), &meta)
            }
            Err(e) => Err(io_err(e)),
        }
    }

    fn load(path: PathBuf, meta: &fs::Metadata) -> Result<Self, TunnelError> {
        let bad = |problem: String| TunnelError::BadKeyFile {
            path: path.clone(),
            problem,
        };
        if !meta.file_type().is_file() {
            return Err(bad("not a regular file".into()));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "mode {mode:04o} lets group or others read the private key; \
                 run `chmod 600` on it (or remove it to generate a new identity)"
            )));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if meta.uid() != euid {
            return Err(bad(format!(
                "owned by uid {}, not by us (uid {euid})",
                meta.uid()
            )));
        }
        let text = fs::read_to_string(&path).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => {
                bad("not text (expected base64 as from `wg genkey`)".into())
            }
            _ => TunnelError::KeyIo {
                path: path.clone(),
                source: e,
            },
        })?;
        let bytes = decode_key(text.trim()).map_err(|p| bad(p.to_owned()))?;
        if bytes == [0u8; 32] {
            return Err(bad("the key is all zeros".into()));
        }
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret);
        Ok(Self {
            secret,
            public,
            path,
        })
    }

    /// The private key.
    pub fn secret(&self) -> &StaticSecret {
        &self.secret
    }

    /// The public key.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The public key in base64, as published in `config.publicKey`.
    pub fn public_base64(&self) -> String {
        encode(self.public.as_bytes())
    }

    /// Where the key lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// 32 bytes from the kernel CSPRNG (getrandom(2), blocking until the pool is initialised).
fn random_key() -> io::Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    let mut filled = 0;
    while filled < bytes.len() {
        let rest = &mut bytes[filled..];
        // SAFETY: the pointer and length describe the writable slice `rest`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(bytes)
}

/// Writes a new key file without ever replacing an existing one: a temporary 0600 file,
/// fsynced, then hard-linked to the final name (fails if the name exists), then the directory
/// is fsynced so the key survives a crash.
fn write_new(path: &Path, bytes: &[u8; 32]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{KEY_FILE}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(format!("{}\n", encode(bytes)).as_bytes())?;
        f.sync_all()?;
        match fs::hard_link(&tmp, path) {
            Ok(()) => {}
            // Someone else created it meanwhile: theirs wins, the caller reads it back.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        fs::File::open(dir)?.sync_all()
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Base64 (standard alphabet, padded) of a key.
pub fn encode(bytes: &[u8; 32]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes a base64 WireGuard key (44 characters, 32 bytes).
pub fn decode_key(text: &str) -> Result<[u8; 32], &'static str> {
    let bytes = STANDARD
        .decode(text)
        .map_err(|_| "not valid base64 (expected a key as from `wg genkey`)")?;
    bytes
        .try_into()
        .map_err(|_| "not a 32-byte key (expected 44 base64 characters)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn generated_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let first = KeyFile::load_or_create(&state).expect("create");
        assert_eq!(mode(first.path()), 0o600);
        assert_eq!(mode(&state), 0o700);
        let second = KeyFile::load_or_create(&state).expect("reload");
        assert_eq!(first.public_base64(), second.public_base64());
        assert_eq!(first.secret().to_bytes(), second.secret().to_bytes());
        // The file is `wg genkey` format.
        let text = fs::read_to_string(first.path()).expect("read");
        assert_eq!(text.len(), 45);
        assert!(text.ends_with('\n'));
        // No temporary file left behind.
        assert_eq!(fs::read_dir(&state).expect("ls").count(), 1);
    }

    #[test]
    fn distinct_directories_get_distinct_keys() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let ka = KeyFile::load_or_create(a.path()).expect("a");
        let kb = KeyFile::load_or_create(b.path()).expect("b");
        assert_ne!(ka.public_base64(), kb.public_base64());
    }

    #[test]
    fn known_key_gives_known_public_key() {
        // RFC 7748 §6.1's Alice private key.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(KEY_FILE);
        let secret: [u8; 32] = [
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2,
            0x66, 0x45, 0xdf, 0x4c, 0x66, 0x2f, 0x8b, 0x7b, 0xe0, 0x99, 0x51, 0xe5, 0x64, 0xba,
            0x26, 0x53, 0x84, 0x3a,
        ];
        write_new(&path, &secret).expect("write");
        let key = KeyFile::load_or_create(dir.path()).expect("load");
        // What `wg pubkey` prints for this private key (checked with wireguard-tools).
        let public = decode_key("6orNzZQYeImGApQfM4sHiC7KNs3nb2sdu9lA5ngHtjM=").expect("b64");
        assert_eq!(key.public().as_bytes(), &public);
    }

    #[test]
    fn refuses_unusable_files() {
        let cases: [(&str, u32, &str); 5] = [
            ("group-readable", 0o640, "chmod 600"),
            ("world-readable", 0o604, "chmod 600"),
            ("garbage", 0o600, "not valid base64"),
            ("c2hvcnQ=", 0o600, "not a 32-byte key"),
            (
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                0o600,
                "all zeros",
            ),
        ];
        for (content, perm, expect) in cases {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join(KEY_FILE);
            let body = if content.ends_with("readable") {
                format!("{}\n", encode(&[7u8; 32]))
            } else {
                format!("{content}\n")
            };
            fs::write(&path, body).expect("write");
            fs::set_permissions(&path, fs::Permissions::from_mode(perm)).expect("chmod");
            let err = KeyFile::load_or_create(dir.path()).expect_err(content);
            let text = err.to_string();
            assert!(text.contains(expect), "{content}: {text}");
            assert!(text.contains(KEY_FILE), "{text}");
            // The bad file is left as it was.
            assert_eq!(mode(&path), perm);
        }
    }

    #[test]
    fn refuses_a_directory_or_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join(KEY_FILE)).expect("mkdir");
        let err = KeyFile::load_or_create(dir.path()).expect_err("directory");
        assert!(err.to_string().contains("not a regular file"), "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("elsewhere");
        write_new(&target, &[9u8; 32]).expect("write");
        std::os::unix::fs::symlink(&target, dir.path().join(KEY_FILE)).expect("symlink");
        let err = KeyFile::load_or_create(dir.path()).expect_err("symlink");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn decode_round_trip() {
        let bytes = [0x5au8; 32];
        assert_eq!(decode_key(&encode(&bytes)), Ok(bytes));
    }
}
