//! The SASL mechanisms must never panic, whatever the client sends at each step (bytes
//! before authentication come from anyone). Run: `cargo +nightly fuzz run sasl_exchange`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_security::{
    CredentialStore, Mechanism, SaslServer, ScramCredential, ScramMechanism,
};

struct One(ScramCredential);

impl CredentialStore for One {
    fn scram_credential(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
        (user == "alice" && m == self.0.mechanism).then(|| self.0.clone())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let mechanism = Mechanism::ALL[which as usize % Mechanism::ALL.len()];
    let scram = match mechanism {
        Mechanism::Scram(m) => m,
        Mechanism::Plain => ScramMechanism::Sha256,
    };
    let store = One(ScramCredential::from_salted_password(scram, vec![1; 16], &[2; 64][..scram.hash_len()], 4096));
    let mut server = SaslServer::new(mechanism);
    // Up to three client messages, separated by 0xff.
    for message in rest.split(|b| *b == 0xff).take(3) {
        if server.step(message, &store).is_err() {
            break;
        }
    }
});
