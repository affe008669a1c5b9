//! The SCRAM core against RFC 7677's SCRAM-SHA-256 example, round trips of both
//! mechanisms, and hostile messages.

use super::*;
use proptest::prelude::*;

// RFC 7677, section 3: user "user", password "pencil".
const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_verifier() -> Verifier {
    let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    Verifier::from_password(Mechanism::Sha256, b"pencil", &salt, 4096)
}

#[test]
fn the_server_side_reproduces_rfc_7677() {
    let first = ClientFirst::parse(CLIENT_FIRST.as_bytes()).unwrap();
    assert_eq!((first.username.as_str(), first.nonce.as_str()), ("user", "rOprNGfwEbeRWgbNEkqO"));
    let server = ServerFirst::new(&first, rfc_verifier(), SERVER_NONCE).unwrap();
    assert_eq!(server.message(), SERVER_FIRST);
    assert_eq!(server.client_final(CLIENT_FINAL.as_bytes()).unwrap(), SERVER_FINAL);
}

#[test]
fn the_client_helper_reproduces_rfc_7677() {
    let (fin, expect) =
        client_final(Mechanism::Sha256, b"pencil", CLIENT_FIRST, SERVER_FIRST).unwrap();
    assert_eq!((fin.as_str(), expect.as_str()), (CLIENT_FINAL, SERVER_FINAL));
}

#[test]
fn a_wrong_password_a_replayed_nonce_or_a_tampered_message_fails() {
    let first = ClientFirst::parse(CLIENT_FIRST.as_bytes()).unwrap();
    let server = ServerFirst::new(&first, rfc_verifier(), SERVER_NONCE).unwrap();
    let (wrong, _) =
        client_final(Mechanism::Sha256, b"pencil2", CLIENT_FIRST, SERVER_FIRST).unwrap();
    assert_eq!(server.client_final(wrong.as_bytes()), Err(ScramError::InvalidProof));
    // The same final message answered to another server nonce.
    let other = ServerFirst::new(&first, rfc_verifier(), "anothernonce").unwrap();
    assert_eq!(other.client_final(CLIENT_FINAL.as_bytes()), Err(ScramError::NonceMismatch));
    // A proof of the right length with one bit flipped, or of the wrong length.
    let flipped = CLIENT_FINAL.replace("p=dH", "p=dI");
    assert_eq!(server.client_final(flipped.as_bytes()), Err(ScramError::InvalidProof));
    let short = CLIENT_FINAL.replace("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "AAAA");
    assert_eq!(server.client_final(short.as_bytes()), Err(ScramError::InvalidProof));
    // The channel-binding flag changed between the two messages.
    let rebound = CLIENT_FINAL.replace("c=biws", "c=eSws");
    assert!(matches!(server.client_final(rebound.as_bytes()), Err(ScramError::Malformed(_))));
}

#[test]
fn librdkafkas_doubled_client_nonce_is_accepted_as_kafka_does() {
    let first = ClientFirst::parse(CLIENT_FIRST.as_bytes()).unwrap();
    let server = ServerFirst::new(&first, rfc_verifier(), SERVER_NONCE).unwrap();
    // What librdkafka 2.0.2 sends: r= its nonce, then the server-first nonce.
    let m = Mechanism::Sha256;
    let salted = m.hi(b"pencil", &STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap(), 4096);
    let client_key = m.hmac(&salted, b"Client Key");
    let without_proof = format!(
        "c=biws,r=rOprNGfwEbeRWgbNEkqO{}",
        &SERVER_FIRST[2..SERVER_FIRST.find(",s=").unwrap()]
    );
    let auth = format!("n=user,r=rOprNGfwEbeRWgbNEkqO,{SERVER_FIRST},{without_proof}");
    let signature = m.hmac(&m.hash(&client_key), auth.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
    let fin = format!("{without_proof},p={}", STANDARD.encode(proof));
    assert!(server.client_final(fin.as_bytes()).is_ok());
}

#[test]
fn both_mechanisms_round_trip_with_an_escaped_user_name() {
    for m in Mechanism::ALL {
        assert_eq!(Mechanism::parse(m.name()), Some(m));
        let v = Verifier::from_password(m, b"secret", b"salty-salt", MIN_ITERATIONS);
        assert_eq!(v.stored_key.len(), m.key_len());
        let client_first = format!("n,,n={},r=abc", escape_saslname("a,b=c"));
        let first = ClientFirst::parse(client_first.as_bytes()).unwrap();
        assert_eq!(first.username, "a,b=c");
        let server = ServerFirst::new(&first, v, "xyz").unwrap();
        let (fin, expect) = client_final(m, b"secret", &client_first, server.message()).unwrap();
        assert_eq!(server.client_final(fin.as_bytes()).unwrap(), expect);
    }
    assert_eq!(Mechanism::parse("scram-sha-256"), None, "names are case-sensitive");
}

#[test]
fn malformed_client_first_messages_are_refused() {
    let long = format!("n,,n={},r=x", "u".repeat(MAX_MESSAGE_BYTES));
    for bad in [
        "",
        "n,",
        "n,,",
        "n,,r=x",
        "n,,n=user",
        "n,,n=,r=x",
        "n,,n=us=er,r=x",
        "n,,n=us=2,r=x",
        "x,,n=user,r=x",
        "n,,n=user,r=",
        "n,,n=user,r=a b",
        "n,a=other,n=user,r=x",
        "n,,n=u\u{0},r=x",
        "m=ext,n=user,r=x",
        "n,,m=ext,n=user,r=x",
        &long,
    ] {
        assert!(ClientFirst::parse(bad.as_bytes()).is_err(), "{bad:?} accepted");
    }
    assert_eq!(ClientFirst::parse(b"p=tls-unique,,n=user,r=x"), Err(ScramError::ChannelBinding));
    assert!(
        ClientFirst::parse(b"n,a=user,n=user,r=x").is_ok(),
        "an authzid equal to the user is fine"
    );
    assert!(ClientFirst::parse(&[b'n', b',', b',', 0xff]).is_err(), "not UTF-8");
}

#[test]
fn unusable_verifiers_are_refused() {
    let first = ClientFirst::parse(CLIENT_FIRST.as_bytes()).unwrap();
    let mut few = rfc_verifier();
    few.iterations = MIN_ITERATIONS - 1;
    assert!(ServerFirst::new(&first, few, "n").is_err());
    let mut short = rfc_verifier();
    short.stored_key.pop();
    assert!(ServerFirst::new(&first, short, "n").is_err());
    assert!(ServerFirst::new(&first, rfc_verifier(), "a,b").is_err(), "a nonce with ','");
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_server(a in proptest::collection::vec(any::<u8>(), 0..600),
                                              b in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(first) = ClientFirst::parse(&a) {
            let server = ServerFirst::new(&first, rfc_verifier(), "n0nce").unwrap();
            prop_assert!(server.client_final(&b).is_err());
        }
        let _ = unescape_saslname(&String::from_utf8_lossy(&a));
    }
}
