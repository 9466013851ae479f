//! etcd authentication (`[team] user` and `password_file`): the user and
//! password are exchanged for a token (`/v3/auth/authenticate`) that goes
//! with every call in the `Authorization` header. etcd forgets a token
//! when it is unused for its `--auth-token-ttl` or when etcd restarts; a
//! call it refuses for that (401) authenticates again and is made once
//! more. The password is kept in memory only, never logged.

use serde_json::{Value, json};
use std::sync::Mutex;

/// A user's credentials and the token they were last exchanged for.
pub(super) struct Auth {
    user: String,
    password: String,
    token: Mutex<Option<String>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Auth {
    pub(super) fn new(user: &str, password: &str) -> Auth {
        Auth {
            user: user.to_string(),
            password: password.to_string(),
            token: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.token.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token in use, if one was obtained.
    pub(super) fn token(&self) -> Option<String> {
        self.lock().clone()
    }

    /// Keeps `token` (from an answer to `body`), or forgets the one in use.
    pub(super) fn set(&self, token: Option<String>) {
        *self.lock() = token;
    }

    /// What `/v3/auth/authenticate` is asked.
    pub(super) fn body(&self) -> Value {
        json!({ "name": self.user, "password": self.password })
    }

    /// The user's name, for errors.
    pub(super) fn user(&self) -> &str {
        &self.user
    }
}
