//! The client-certificate header layer end to end: every outgoing profile byte for byte against
//! the documented formats, every forwarded format round-tripped (emit, then parse, gives the
//! same certificate), and hostile input — unbalanced or escaped quotes, separators inside quoted
//! subjects, oversized headers, bad base64/PEM, CR/LF in certificate names — never panicking
//! and never producing an unsafe header.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    SanType, SerialNumber,
};
use xsrouter::inbound::{
    ClientCertificate, EmitContext, EmitOptions, ForwardProfile, ForwardedCertError,
    ForwardedFormat, HeaderError, MAX_HEADER_BYTES, NginxFlavor, Verification, XfccFields,
    XfccMode, emit, from_cf_raw, from_envoy_xfcc, from_escaped_pem, from_rfc9440, from_traefik,
    from_xfcc_any, is_client_cert_header, parse_xfcc,
};

// ---------------------------------------------------------------------------------------------
// Test PKI

const NOT_BEFORE: i64 = 1_673_784_000; // 2023-01-15 12:00:00 UTC
const NOT_AFTER: i64 = 1_989_360_000; // 2033-01-15 00:00:00 UTC
const NOW: i64 = 1_700_000_000;
const SERIAL: [u8; 12] = [
    0x6C, 0x0A, 0x83, 0x7E, 0x92, 0x3B, 0xD6, 0xC6, 0xE3, 0x56, 0x50, 0xE7,
];

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Lyft");
    dn.push(DnType::CommonName, "Test CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca")
}

fn leaf_der(
    ca: &CertifiedIssuer<'static, KeyPair>,
    dn: DistinguishedName,
    sans: Vec<SanType>,
) -> Vec<u8> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.serial_number = Some(SerialNumber::from_slice(&SERIAL));
    params.not_before =
        rcgen::date_time_ymd(2023, 1, 15) + std::time::Duration::from_secs(12 * 3600);
    params.not_after = rcgen::date_time_ymd(2033, 1, 15);
    params
        .signed_by(&KeyPair::generate().expect("key"), ca)
        .expect("leaf")
        .der()
        .to_vec()
}

fn lyft_dn() -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::StateOrProvinceName, "CA");
    dn.push(DnType::LocalityName, "San Francisco");
    dn.push(DnType::OrganizationalUnitName, "Lyft");
    dn.push(DnType::CommonName, "Test Client");
    dn
}

fn lyft_sans() -> Vec<SanType> {
    vec![
        SanType::URI(
            "spiffe://cluster.local/ns/default/sa/client"
                .try_into()
                .expect("uri"),
        ),
        SanType::DnsName("lyft.com".try_into().expect("dns")),
        SanType::DnsName("www.lyft.com".try_into().expect("dns")),
        SanType::Rfc822Name("client@lyft.com".try_into().expect("mail")),
        SanType::IpAddress("10.0.1.2".parse().expect("ip")),
    ]
}

/// The Lyft-like client certificate, with the CA as its chain.
struct Fixture {
    leaf: Vec<u8>,
    ca: Vec<u8>,
    cert: ClientCertificate,
}

fn fixture() -> Fixture {
    let ca = ca();
    let leaf = leaf_der(&ca, lyft_dn(), lyft_sans());
    let ca = ca.der().to_vec();
    let cert = ClientCertificate::from_der(leaf.clone(), vec![ca.clone()]).expect("parse");
    Fixture { leaf, ca, cert }
}

// ---------------------------------------------------------------------------------------------
// Independent encoders for the expected values (written from the reference's rules, not with
// the code under test).

fn sha256_hex(der: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

fn sha1_hex(der: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// OpenSSL PEM: 64-column lines, `\n`, trailing newline.
fn pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// URL-encoded PEM: only `A-Z a-z 0-9 - . _ ~` stay; PEM text has just these others.
fn escaped_pem(der: &[u8]) -> String {
    pem(der)
        .chars()
        .map(|c| match c {
            ' ' => "%20".to_owned(),
            '\n' => "%0A".to_owned(),
            '+' => "%2B".to_owned(),
            '/' => "%2F".to_owned(),
            '=' => "%3D".to_owned(),
            c if c.is_ascii_alphanumeric() || c == '-' => c.to_string(),
            c => panic!("unexpected PEM character {c:?}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Emission helpers

fn context(cert: &ClientCertificate) -> EmitContext<'_> {
    EmitContext {
        certificate: Some(cert),
        verification: Verification::Success,
        connection_certificate: Some(cert),
        incoming_xfcc: None,
        now: NOW,
    }
}

fn emitted(profile: ForwardProfile, context: &EmitContext<'_>) -> Vec<(String, String)> {
    pairs(
        &emit(&[profile], context, &EmitOptions::default())
            .expect("emit")
            .headers,
    )
}

fn pairs(headers: &[(HeaderName, HeaderValue)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().expect("ascii").to_owned()))
        .collect()
}

fn expect(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.clone()))
        .collect()
}

fn envoy(mode: XfccMode, fields: XfccFields) -> ForwardProfile {
    ForwardProfile::Envoy { mode, fields }
}

fn all_profiles() -> Vec<Vec<ForwardProfile>> {
    let full = XfccFields {
        by: vec!["spiffe://router".into()],
        cert: true,
        chain: true,
        subject: true,
        uri: true,
        dns: true,
    };
    vec![
        vec![
            envoy(XfccMode::SanitizeSet, full),
            ForwardProfile::Rfc9440,
            ForwardProfile::Nginx(NginxFlavor::Nginx),
            ForwardProfile::AzureAppGateway,
            ForwardProfile::Traefik {
                pem: true,
                info: true,
            },
        ],
        vec![
            ForwardProfile::CloudFoundry,
            ForwardProfile::Nginx(NginxFlavor::Azion),
        ],
    ]
}

// ---------------------------------------------------------------------------------------------
// Outgoing profiles, byte for byte

#[test]
fn envoy_xfcc_default_fields() {
    let f = fixture();
    let hash = sha256_hex(&f.leaf);
    assert_eq!(
        emitted(
            envoy(XfccMode::SanitizeSet, XfccFields::default()),
            &context(&f.cert)
        ),
        expect(&[(
            "x-forwarded-client-cert",
            format!(
                "Hash={hash};Subject=\"CN=Test Client,OU=Lyft,L=San Francisco,ST=CA,C=US\";\
                 URI=spiffe://cluster.local/ns/default/sa/client;DNS=lyft.com;DNS=www.lyft.com"
            )
        )])
    );
}

#[test]
fn envoy_xfcc_all_fields() {
    let f = fixture();
    let hash = sha256_hex(&f.leaf);
    let fields = XfccFields {
        by: vec![
            "spiffe://cluster.local/ns/default/sa/router".into(),
            "http://frontend.lyft.com".into(),
        ],
        cert: true,
        chain: true,
        subject: true,
        uri: true,
        dns: true,
    };
    let cert = escaped_pem(&f.leaf);
    let chain = format!("{}{}", escaped_pem(&f.leaf), escaped_pem(&f.ca));
    assert_eq!(
        emitted(envoy(XfccMode::SanitizeSet, fields), &context(&f.cert)),
        expect(&[(
            "x-forwarded-client-cert",
            format!(
                "By=spiffe://cluster.local/ns/default/sa/router;By=http://frontend.lyft.com;\
                 Hash={hash};Cert=\"{cert}\";Chain=\"{chain}\";\
                 Subject=\"CN=Test Client,OU=Lyft,L=San Francisco,ST=CA,C=US\";\
                 URI=spiffe://cluster.local/ns/default/sa/client;DNS=lyft.com;DNS=www.lyft.com"
            )
        )])
    );
    assert!(cert.starts_with("-----BEGIN%20CERTIFICATE-----%0AMII"));
    assert!(cert.ends_with("%0A-----END%20CERTIFICATE-----%0A"));
}

#[test]
fn envoy_xfcc_hash_only_and_no_uri() {
    let ca = ca();
    let der = leaf_der(&ca, lyft_dn(), vec![]);
    let cert = ClientCertificate::from_der(der.clone(), vec![]).expect("parse");
    let fields = XfccFields {
        subject: false,
        dns: true,
        ..XfccFields::default()
    };
    // Envoy writes `URI=` even without a URI SAN, and a `DNS` pair per name (none here).
    assert_eq!(
        emitted(envoy(XfccMode::SanitizeSet, fields), &context(&cert)),
        expect(&[(
            "x-forwarded-client-cert",
            format!("Hash={};URI=", sha256_hex(&der))
        )])
    );
    let bare = XfccFields {
        subject: false,
        uri: false,
        dns: false,
        ..XfccFields::default()
    };
    assert_eq!(
        emitted(envoy(XfccMode::SanitizeSet, bare), &context(&cert)),
        expect(&[(
            "x-forwarded-client-cert",
            format!("Hash={}", sha256_hex(&der))
        )])
    );
}

#[test]
fn envoy_modes_against_incoming_xfcc() {
    let f = fixture();
    let element = format!("Hash={}", sha256_hex(&f.leaf));
    let bare = XfccFields {
        subject: false,
        uri: false,
        dns: false,
        ..XfccFields::default()
    };
    let incoming = "By=spiffe://edge;Hash=9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e;URI=spiffe://user";
    let run = |mode: XfccMode, cert: Option<&ClientCertificate>| -> Vec<(String, String)> {
        let context = EmitContext {
            certificate: cert,
            verification: Verification::Success,
            connection_certificate: cert,
            incoming_xfcc: Some(incoming),
            now: NOW,
        };
        emitted(envoy(mode, bare.clone()), &context)
    };
    let xfcc = |v: String| expect(&[("x-forwarded-client-cert", v)]);
    assert_eq!(run(XfccMode::Sanitize, Some(&f.cert)), []);
    assert_eq!(
        run(XfccMode::SanitizeSet, Some(&f.cert)),
        xfcc(element.clone())
    );
    assert_eq!(
        run(XfccMode::AppendForward, Some(&f.cert)),
        xfcc(format!("{incoming},{element}"))
    );
    assert_eq!(
        run(XfccMode::ForwardOnly, Some(&f.cert)),
        xfcc(incoming.into())
    );
    assert_eq!(
        run(XfccMode::AlwaysForwardOnly, Some(&f.cert)),
        xfcc(incoming.into())
    );
    // No client certificate: only ALWAYS_FORWARD_ONLY passes anything on.
    for mode in [
        XfccMode::Sanitize,
        XfccMode::SanitizeSet,
        XfccMode::AppendForward,
        XfccMode::ForwardOnly,
    ] {
        assert_eq!(run(mode, None), [], "{mode:?}");
    }
    assert_eq!(
        run(XfccMode::AlwaysForwardOnly, None),
        xfcc(incoming.into())
    );
}

/// Behind a trusted mTLS proxy the effective certificate (the forwarded client's) and the
/// connection's certificate (the proxy's) differ: `sanitize_set` describes the client, Envoy's
/// forwarding modes describe the connection, as Envoy describes its peer.
#[test]
fn forwarding_modes_describe_the_connection() {
    let f = fixture();
    let ca = ca();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "edge-proxy");
    let proxy_der = leaf_der(&ca, dn, Vec::new());
    let proxy = ClientCertificate::from_der(proxy_der.clone(), Vec::new()).expect("proxy");
    let bare = XfccFields {
        subject: false,
        uri: false,
        dns: false,
        ..XfccFields::default()
    };
    let incoming = format!("Hash={}", sha256_hex(&f.leaf));
    let context = EmitContext {
        connection_certificate: Some(&proxy),
        incoming_xfcc: Some(&incoming),
        ..context(&f.cert)
    };
    let xfcc = |v: String| expect(&[("x-forwarded-client-cert", v)]);
    assert_eq!(
        emitted(envoy(XfccMode::SanitizeSet, bare.clone()), &context),
        xfcc(format!("Hash={}", sha256_hex(&f.leaf)))
    );
    assert_eq!(
        emitted(envoy(XfccMode::AppendForward, bare.clone()), &context),
        xfcc(format!("{incoming},Hash={}", sha256_hex(&proxy_der)))
    );
    // No verified connection certificate (a plain-HTTP proxy): the forwarding modes send nothing.
    let plain = EmitContext {
        connection_certificate: None,
        ..context.clone()
    };
    for mode in [XfccMode::AppendForward, XfccMode::ForwardOnly] {
        assert_eq!(emitted(envoy(mode, bare.clone()), &plain), [], "{mode:?}");
    }
    assert_eq!(
        emitted(envoy(XfccMode::AlwaysForwardOnly, bare.clone()), &plain),
        xfcc(incoming.clone())
    );
}

#[test]
fn cloud_foundry_raw() {
    let f = fixture();
    assert_eq!(
        emitted(ForwardProfile::CloudFoundry, &context(&f.cert)),
        expect(&[("x-forwarded-client-cert", STANDARD.encode(&f.leaf))])
    );
}

#[test]
fn rfc9440_byte_sequences() {
    let f = fixture();
    assert_eq!(
        emitted(ForwardProfile::Rfc9440, &context(&f.cert)),
        expect(&[
            ("client-cert", format!(":{}:", STANDARD.encode(&f.leaf))),
            ("client-cert-chain", format!(":{}:", STANDARD.encode(&f.ca))),
        ])
    );
    // Without a chain there is no Client-Cert-Chain; several members are `, `-separated.
    let lone = ClientCertificate::from_der(f.leaf.clone(), vec![]).expect("parse");
    assert_eq!(
        emitted(ForwardProfile::Rfc9440, &context(&lone)),
        expect(&[("client-cert", format!(":{}:", STANDARD.encode(&f.leaf)))])
    );
    let two = ClientCertificate::from_der(f.leaf.clone(), vec![f.ca.clone(), f.ca.clone()])
        .expect("parse");
    let ca = STANDARD.encode(&f.ca);
    assert_eq!(
        emitted(ForwardProfile::Rfc9440, &context(&two))[1],
        ("client-cert-chain".to_owned(), format!(":{ca}:, :{ca}:"))
    );
}

#[test]
fn nginx_variables() {
    let f = fixture();
    assert_eq!(
        (f.cert.not_before(), f.cert.not_after()),
        (NOT_BEFORE, NOT_AFTER)
    );
    // nginx: whole days left, rounded down.
    assert_eq!((NOT_AFTER - NOW) / 86_400, 3349);
    assert_eq!(
        emitted(ForwardProfile::Nginx(NginxFlavor::Nginx), &context(&f.cert)),
        expect(&[
            ("ssl-client-escaped-cert", escaped_pem(&f.leaf)),
            (
                "ssl-client-s-dn",
                "CN=Test Client,OU=Lyft,L=San Francisco,ST=CA,C=US".into()
            ),
            ("ssl-client-i-dn", "CN=Test CA,O=Lyft".into()),
            ("ssl-client-serial", "6C0A837E923BD6C6E35650E7".into()),
            ("ssl-client-fingerprint", sha1_hex(&f.leaf)),
            ("ssl-client-v-start", "Jan 15 12:00:00 2023 GMT".into()),
            ("ssl-client-v-end", "Jan 15 00:00:00 2033 GMT".into()),
            ("ssl-client-v-remain", "3349".into()),
            ("ssl-client-verify", "SUCCESS".into()),
        ])
    );
}

#[test]
fn azion_variables() {
    let f = fixture();
    assert_eq!(
        emitted(ForwardProfile::Nginx(NginxFlavor::Azion), &context(&f.cert)),
        expect(&[
            ("ssl-client-escaped-cert", escaped_pem(&f.leaf)),
            (
                "ssl-client-s-dn",
                "/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client".into()
            ),
            ("ssl-client-i-dn", "/O=Lyft/CN=Test CA".into()),
            ("ssl-client-s-dn-parsed", "Test Client".into()),
            (
                "ssl-client-serial",
                "6C:0A:83:7E:92:3B:D6:C6:E3:56:50:E7".into()
            ),
            ("ssl-client-fingerprint", sha1_hex(&f.leaf)),
            ("ssl-client-v-start", "20230115120000".into()),
            ("ssl-client-v-end", "20330115000000".into()),
            ("ssl-client-v-remain", "3349".into()),
            ("ssl-client-verify", "SUCCESS".into()),
        ])
    );
}

#[test]
fn azure_application_gateway_variables() {
    let f = fixture();
    assert_eq!(
        emitted(ForwardProfile::AzureAppGateway, &context(&f.cert)),
        expect(&[
            ("x-client-certificate", escaped_pem(&f.leaf)),
            ("x-client-certificate-fingerprint", sha1_hex(&f.leaf)),
            ("x-client-certificate-issuer", "CN=Test CA,O=Lyft".into()),
            (
                "x-client-certificate-serial",
                "6C0A837E923BD6C6E35650E7".into()
            ),
            (
                "x-client-certificate-subject",
                "CN=Test Client,OU=Lyft,L=San Francisco,ST=CA,C=US".into()
            ),
            (
                "x-client-certificate-start-date",
                "Jan 15 12:00:00 2023 GMT".into()
            ),
            (
                "x-client-certificate-end-date",
                "Jan 15 00:00:00 2033 GMT".into()
            ),
            ("x-client-certificate-verification", "SUCCESS".into()),
        ])
    );
}

#[test]
fn traefik_headers() {
    let f = fixture();
    assert_eq!(
        emitted(
            ForwardProfile::Traefik {
                pem: true,
                info: true
            },
            &context(&f.cert)
        ),
        expect(&[
            (
                "x-forwarded-tls-client-cert",
                format!("{},{}", STANDARD.encode(&f.leaf), STANDARD.encode(&f.ca))
            ),
            (
                "x-forwarded-tls-client-cert-info",
                "Subject%3D%22C%3DUS%2CST%3DCA%2CL%3DSan+Francisco%2COU%3DLyft%2CCN%3DTest+Client%22\
                 %3BIssuer%3D%22O%3DLyft%2CCN%3DTest+CA%22\
                 %3BNB%3D%221673784000%22%3BNA%3D%221989360000%22\
                 %3BSAN%3D%22lyft.com%2Cwww.lyft.com%2Cclient%40lyft.com%2C10.0.1.2\
                 %2Cspiffe%3A%2F%2Fcluster.local%2Fns%2Fdefault%2Fsa%2Fclient%22"
                    .into()
            ),
        ])
    );
}

#[test]
fn verification_status_headers() {
    let f = fixture();
    let profiles = [
        ForwardProfile::Nginx(NginxFlavor::Nginx),
        ForwardProfile::AzureAppGateway,
        ForwardProfile::CloudFoundry,
    ];
    let run = |verification: Verification, forward_unverified: bool| {
        let context = EmitContext {
            verification,
            ..context(&f.cert)
        };
        let options = EmitOptions {
            forward_unverified,
            ..EmitOptions::default()
        };
        pairs(&emit(&profiles, &context, &options).expect("emit").headers)
    };
    // Not verified and not forwarded: only the status headers.
    assert_eq!(
        run(
            Verification::Failed("unable to get local issuer certificate\r\nX-Evil: 1".into()),
            false
        ),
        expect(&[
            (
                "ssl-client-verify",
                "FAILED:unable to get local issuer certificate??X-Evil: 1".into()
            ),
            (
                "x-client-certificate-verification",
                "FAILED:unable to get local issuer certificate??X-Evil: 1".into()
            ),
        ])
    );
    assert_eq!(
        run(Verification::Unverified, false),
        expect(&[
            ("ssl-client-verify", "FAILED:unverified".into()),
            ("x-client-certificate-verification", "PASSTHROUGH".into()),
        ])
    );
    // Opted in: the details go too.
    let all = run(Verification::Unverified, true);
    assert_eq!(all.len(), 9 + 8 + 1);
    assert_eq!(
        all.last(),
        Some(&(
            "x-forwarded-client-cert".to_owned(),
            STANDARD.encode(&f.leaf)
        ))
    );
}

// ---------------------------------------------------------------------------------------------
// Round trips: emit, then parse, gives the same certificate

#[test]
fn every_forwarded_format_round_trips() {
    let f = fixture();
    let fingerprint = sha256_hex(&f.leaf);
    for profiles in all_profiles() {
        let headers = emit(&profiles, &context(&f.cert), &EmitOptions::default())
            .expect("emit")
            .headers;
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(name, value);
        }
        let mut formats = vec![
            ForwardedFormat::EscapedPem(HeaderName::from_static("ssl-client-escaped-cert")),
            ForwardedFormat::AnyXfcc,
        ];
        if map.contains_key("client-cert") {
            formats.extend([
                ForwardedFormat::Envoy,
                ForwardedFormat::Rfc9440,
                ForwardedFormat::Traefik,
                ForwardedFormat::EscapedPem(HeaderName::from_static("x-client-certificate")),
            ]);
        } else {
            formats.push(ForwardedFormat::CloudFoundry);
        }
        for format in formats {
            let parsed = format
                .parse(&map)
                .unwrap_or_else(|e| panic!("{format:?}: {e}"))
                .unwrap_or_else(|| panic!("{format:?}: no certificate"));
            assert_eq!(parsed.sha256_hex(), fingerprint, "{format:?}");
            assert_eq!(parsed.leaf_der(), f.leaf.as_slice(), "{format:?}");
            assert_eq!(parsed.subject(), f.cert.subject(), "{format:?}");
        }
    }
}

#[test]
fn chains_survive_round_trips() {
    let f = fixture();
    let headers = |profile: ForwardProfile| {
        pairs(
            &emit(&[profile], &context(&f.cert), &EmitOptions::default())
                .expect("emit")
                .headers,
        )
    };
    let full = XfccFields {
        cert: true,
        chain: true,
        ..XfccFields::default()
    };
    let xfcc = headers(envoy(XfccMode::SanitizeSet, full));
    assert_eq!(
        from_envoy_xfcc(&xfcc[0].1).expect("xfcc").chain_der(),
        std::slice::from_ref(&f.ca)
    );
    // `Chain` alone (Envoy includes the leaf) also gives leaf and chain.
    let chain_only = XfccFields {
        chain: true,
        ..XfccFields::default()
    };
    let xfcc = headers(envoy(XfccMode::SanitizeSet, chain_only));
    let parsed = from_envoy_xfcc(&xfcc[0].1).expect("xfcc");
    assert_eq!(parsed.leaf_der(), f.leaf.as_slice());
    assert_eq!(parsed.chain_der(), std::slice::from_ref(&f.ca));

    let rfc = headers(ForwardProfile::Rfc9440);
    let parsed = from_rfc9440(&rfc[0].1, Some(&rfc[1].1)).expect("rfc9440");
    assert_eq!(parsed.chain_der(), std::slice::from_ref(&f.ca));

    let traefik = headers(ForwardProfile::Traefik {
        pem: true,
        info: false,
    });
    assert_eq!(
        from_traefik(&traefik[0].1).expect("traefik").chain_der(),
        std::slice::from_ref(&f.ca)
    );
    // Traefik 2.8–2.9.1 URL-escaped the value.
    let escaped = traefik[0]
        .1
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
        .replace(',', "%2C");
    assert_eq!(
        from_traefik(&escaped)
            .expect("escaped traefik")
            .sha256_hex(),
        sha256_hex(&f.leaf)
    );
    // nginx-style PEM with spaces for line breaks, chain appended.
    let spaced = format!("{}{}", pem(&f.leaf), pem(&f.ca)).replace('\n', " ");
    assert_eq!(
        from_escaped_pem(&spaced).expect("pem").chain_der(),
        std::slice::from_ref(&f.ca)
    );
}

#[test]
fn the_last_xfcc_element_wins_and_hash_must_match() {
    let f = fixture();
    let other = fixture();
    let element = |fx: &Fixture| {
        format!(
            "Hash={};Cert=\"{}\"",
            sha256_hex(&fx.leaf),
            escaped_pem(&fx.leaf)
        )
    };
    // The client-supplied element comes first; the nearest proxy's last.
    let value = format!("{},{}", element(&other), element(&f));
    assert_eq!(
        from_envoy_xfcc(&value).expect("xfcc").leaf_der(),
        f.leaf.as_slice()
    );
    // Repeated header instances are joined in order: the last instance's element wins.
    let mut map = HeaderMap::new();
    map.append(
        "x-forwarded-client-cert",
        HeaderValue::from_str(&element(&other)).expect("value"),
    );
    map.append(
        "x-forwarded-client-cert",
        HeaderValue::from_str(&element(&f)).expect("value"),
    );
    let parsed = ForwardedFormat::Envoy
        .parse(&map)
        .expect("parse")
        .expect("cert");
    assert_eq!(parsed.leaf_der(), f.leaf.as_slice());
    // A Hash that does not describe Cert is refused.
    let forged = format!(
        "Hash={};Cert=\"{}\"",
        sha256_hex(&other.leaf),
        escaped_pem(&f.leaf)
    );
    assert_eq!(
        from_envoy_xfcc(&forged),
        Err(ForwardedCertError::HashMismatch)
    );
    // Two Certs in one element are ambiguous.
    let doubled = format!(
        "Cert=\"{}\";Cert=\"{}\"",
        escaped_pem(&f.leaf),
        escaped_pem(&other.leaf)
    );
    assert!(matches!(
        from_envoy_xfcc(&doubled),
        Err(ForwardedCertError::DuplicateXfccKey { key: "Cert" })
    ));
    // Single-item headers may not repeat.
    let mut map = HeaderMap::new();
    let raw = HeaderValue::from_str(&STANDARD.encode(&f.leaf)).expect("value");
    map.append("x-forwarded-client-cert", raw.clone());
    map.append("x-forwarded-client-cert", raw);
    assert!(matches!(
        ForwardedFormat::CloudFoundry.parse(&map),
        Err(ForwardedCertError::Repeated { count: 2, .. })
    ));
    assert_eq!(ForwardedFormat::Rfc9440.parse(&HeaderMap::new()), Ok(None));
    let mut chain_only = HeaderMap::new();
    chain_only.insert("client-cert-chain", HeaderValue::from_static(":AQID:"));
    assert_eq!(
        ForwardedFormat::Rfc9440.parse(&chain_only),
        Err(ForwardedCertError::ChainWithoutCert)
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile input

/// A certificate whose names carry quotes, separators and CR/LF.
fn hostile_cert() -> (Vec<u8>, ClientCertificate) {
    let ca = ca();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::OrganizationName,
        "Evil\", Inc.;URI=spiffe://admin,Hash=00",
    );
    dn.push(DnType::CommonName, "evil\r\nX-Injected: yes\0\\\"/CN=admin");
    let sans = vec![
        SanType::URI(
            "spiffe://a;b=c,d\"e\\\r\nx-evil: 1"
                .try_into()
                .expect("uri"),
        ),
        SanType::DnsName("evil.com\r\nx-evil: 1".try_into().expect("dns")),
    ];
    let der = leaf_der(&ca, dn, sans);
    let cert = ClientCertificate::from_der(der.clone(), vec![]).expect("parse");
    (der, cert)
}

#[test]
fn names_with_newlines_and_quotes_never_break_headers() {
    let (der, cert) = hostile_cert();
    assert_eq!(
        cert.subject(),
        "CN=evil\\0D\\0AX-Injected: yes\\00\\5C\\22/CN=admin,\
         O=Evil\\22\\, Inc.\\;URI=spiffe://admin\\,Hash=00"
    );
    assert_eq!(
        cert.subject_legacy(),
        "/O=Evil\", Inc.;URI=spiffe:\\x2F\\x2Fadmin,Hash=00\
         /CN=evil\\x0D\\x0AX-Injected: yes\\x00\\x5C\"\\x2FCN=admin"
    );
    assert_eq!(cert.uris(), ["spiffe://a;b=c,d%22e%5C%0D%0Ax-evil:%201"]);
    assert_eq!(cert.dns_names(), ["evil.com%0D%0Ax-evil:%201"]);

    let options = EmitOptions {
        forward_unverified: true,
        ..EmitOptions::default()
    };
    for profiles in all_profiles() {
        let headers = emit(&profiles, &context(&cert), &options)
            .expect("emit")
            .headers;
        assert!(!headers.is_empty());
        for (name, value) in &headers {
            assert!(
                !value
                    .as_bytes()
                    .iter()
                    .any(|b| matches!(b, b'\r' | b'\n' | 0)),
                "{name} carries a control character"
            );
        }
    }

    // The XFCC element parses back to exactly one element with the same values.
    let full = XfccFields {
        cert: true,
        ..XfccFields::default()
    };
    let xfcc = emitted(envoy(XfccMode::SanitizeSet, full), &context(&cert));
    assert_eq!(
        xfcc[0].1,
        format!(
            "Hash={};Cert=\"{}\";Subject=\"{}\";URI=\"spiffe://a;b=c,d%22e%5C%0D%0Ax-evil:%201\";\
             DNS=evil.com%0D%0Ax-evil:%201",
            sha256_hex(&der),
            escaped_pem(&der),
            cert.subject()
        )
    );
    let elements = parse_xfcc(&xfcc[0].1).expect("parse");
    assert_eq!(elements.len(), 1);
    assert_eq!(elements[0].subject.as_deref(), Some(cert.subject()));
    assert_eq!(elements[0].uri, cert.uris());
    assert_eq!(elements[0].dns, cert.dns_names());
    assert_eq!(
        from_envoy_xfcc(&xfcc[0].1).expect("xfcc").leaf_der(),
        der.as_slice()
    );
}

#[test]
fn quotes_and_separators_in_incoming_xfcc() {
    // Escaped quotes, `;`, `,` and `=` inside a quoted Subject stay inside it.
    let v = r#"Hash=9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e;Subject="CN=a\"b\",Hash=00;URI=x";URI=spiffe://ok"#;
    let elements = parse_xfcc(v).expect("parse");
    assert_eq!(elements.len(), 1);
    assert_eq!(
        elements[0].subject.as_deref(),
        Some(r#"CN=a"b",Hash=00;URI=x"#)
    );
    assert_eq!(elements[0].uri, ["spiffe://ok"]);
    // An unbalanced quote is an error, wherever it is.
    for bad in [
        r#"Subject="CN=a"#,
        r#"Subject="CN=a\"#,
        r#"Subject="CN=a\",By=x"#,
        r#"By=x,Subject="CN=a;Hash=00"#,
        r#"Subject=CN="a""#,
        r#"Subject="a" "b""#,
    ] {
        assert!(
            matches!(
                parse_xfcc(bad),
                Err(ForwardedCertError::MalformedXfcc { .. })
            ),
            "{bad}"
        );
    }
    // Appending to a malformed incoming XFCC is refused: the open quote would swallow ours.
    let f = fixture();
    let context = EmitContext {
        incoming_xfcc: Some(r#"Hash=00;Subject="x"#),
        ..context(&f.cert)
    };
    assert!(matches!(
        emit(
            &[envoy(XfccMode::AppendForward, XfccFields::default())],
            &context,
            &EmitOptions::default()
        ),
        Err(HeaderError::MalformedIncomingXfcc(_))
    ));
}

#[test]
fn oversized_headers_are_refused() {
    let big = "A".repeat(MAX_HEADER_BYTES + 1);
    let too_large = |r: Result<ClientCertificate, ForwardedCertError>| {
        matches!(r, Err(ForwardedCertError::TooLarge { .. }))
    };
    assert!(too_large(from_envoy_xfcc(&format!("By={big}"))));
    assert!(too_large(from_cf_raw(&big)));
    assert!(too_large(from_xfcc_any(&big)));
    assert!(too_large(from_rfc9440(&format!(":{big}:"), None)));
    assert!(too_large(from_rfc9440(":AQID:", Some(&format!(":{big}:")))));
    assert!(too_large(from_escaped_pem(&big)));
    assert!(too_large(from_traefik(&big)));
    // Joined instances count together.
    let mut map = HeaderMap::new();
    let half = HeaderValue::from_str(&"A".repeat(MAX_HEADER_BYTES / 2 + 1)).expect("value");
    map.append("x-forwarded-client-cert", half.clone());
    map.append("x-forwarded-client-cert", half);
    assert!(matches!(
        ForwardedFormat::Envoy.parse(&map),
        Err(ForwardedCertError::TooLarge { .. })
    ));
    // Too many elements or certificates.
    let f = fixture();
    let many = vec![format!("Hash={}", sha256_hex(&f.leaf)); 9].join(",");
    assert!(matches!(
        from_envoy_xfcc(&many),
        Err(ForwardedCertError::TooMany { .. })
    ));
    let b64 = STANDARD.encode(&f.leaf);
    let nine = [b64.as_str(); 9].join(",");
    assert!(matches!(
        from_traefik(&nine),
        Err(ForwardedCertError::TooMany { .. })
    ));
    let chain = vec![format!(":{b64}:"); 8].join(", ");
    assert!(matches!(
        from_rfc9440(&format!(":{b64}:"), Some(&chain)),
        Err(ForwardedCertError::TooMany { .. })
    ));
}

#[test]
fn invalid_base64_and_pem_are_errors() {
    let f = fixture();
    let b64 = STANDARD.encode(&f.leaf);
    for bad in [
        "",
        "!!!!",
        "MIIB$$$$",
        &b64[..b64.len() - 7],
        "QUJD", // valid base64, not a certificate
    ] {
        assert!(from_cf_raw(bad).is_err(), "{bad}");
        assert!(from_traefik(bad).is_err(), "{bad}");
        assert!(from_rfc9440(&format!(":{bad}:"), None).is_err(), "{bad}");
    }
    assert!(from_rfc9440(&b64, None).is_err()); // no colons
    assert!(from_rfc9440(&format!(":{b64}"), None).is_err());
    assert!(from_rfc9440(&format!(":{b64}:"), Some(&format!(":{b64}:,"))).is_err());
    assert!(from_rfc9440(&format!(":{b64}:"), Some("AQID")).is_err());
    let pem = escaped_pem(&f.leaf);
    for bad in [
        pem.replace("BEGIN", "BEGIM"),
        pem.replace("END%20CERTIFICATE", "END"),
        pem.replace("%0A-----END", "%21%0A-----END"),
        pem.replace("-----BEGIN%20CERTIFICATE", "junk-----BEGIN%20CERTIFICATE"),
        format!("{pem}%FF"),
        pem[..pem.len() / 2].to_owned(),
    ] {
        assert!(from_escaped_pem(&bad).is_err(), "{bad}");
        assert!(
            from_envoy_xfcc(&format!("Cert=\"{bad}\"")).is_err(),
            "{bad}"
        );
    }
    // A trailing byte after the DER is not the same certificate.
    let mut padded = f.leaf.clone();
    padded.push(0);
    assert!(from_cf_raw(&STANDARD.encode(&padded)).is_err());
}

#[test]
fn header_budget() {
    let f = fixture();
    let fields = XfccFields {
        cert: true,
        chain: true,
        ..XfccFields::default()
    };
    let profiles = [envoy(XfccMode::SanitizeSet, fields)];
    // Over the budget, Cert and Chain go first.
    let tight = EmitOptions {
        max_total_bytes: 600,
        ..EmitOptions::default()
    };
    let emitted = emit(&profiles, &context(&f.cert), &tight).expect("emit");
    assert!(emitted.dropped_pem);
    let value = emitted.headers[0].1.to_str().expect("ascii");
    assert!(value.starts_with("Hash=") && !value.contains("Cert="));
    // Still too large: a clear error, never a truncated header.
    let tiny = EmitOptions {
        max_total_bytes: 64,
        ..EmitOptions::default()
    };
    assert!(matches!(
        emit(&profiles, &context(&f.cert), &tiny),
        Err(HeaderError::BudgetExceeded { limit: 64, .. })
    ));
    let narrow = EmitOptions {
        max_value_bytes: 100,
        ..EmitOptions::default()
    };
    assert!(matches!(
        emit(&[ForwardProfile::CloudFoundry], &context(&f.cert), &narrow),
        Err(HeaderError::ValueTooLarge {
            header: "x-forwarded-client-cert",
            ..
        })
    ));
}

#[test]
fn every_emitted_header_is_on_the_strip_list() {
    let f = fixture();
    for profiles in all_profiles() {
        for (name, _) in emit(&profiles, &context(&f.cert), &EmitOptions::default())
            .expect("emit")
            .headers
        {
            assert!(is_client_cert_header(name.as_str()), "{name}");
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn no_input_panics() {
    let f = fixture();
    let mut seeds: Vec<String> = Vec::new();
    for profiles in all_profiles() {
        for (_, value) in emit(&profiles, &context(&f.cert), &EmitOptions::default())
            .expect("emit")
            .headers
        {
            seeds.push(value.to_str().expect("ascii").to_owned());
        }
    }
    seeds.push(r#"By=a;Subject="x\"y;z",Hash=00"#.to_owned());
    seeds.push(":AQID:;a=\"x\\\"\";b=:AA==:, :AQ==:".to_owned());
    let parse_all = |s: &str| {
        let _ = parse_xfcc(s);
        let _ = from_envoy_xfcc(s);
        let _ = from_cf_raw(s);
        let _ = from_xfcc_any(s);
        let _ = from_rfc9440(s, Some(s));
        let _ = from_rfc9440(":AQID:", Some(s));
        let _ = from_escaped_pem(s);
        let _ = from_traefik(s);
    };
    let alphabet: &[u8] = b"\"\\;,=:% +/-_AQIDMab0\t\r\n\x00\xff";
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for seed in &seeds {
        // Every prefix (cuts inside quotes, escapes, base64 and PEM armor).
        for end in (0..=seed.len()).filter(|&i| seed.is_char_boundary(i)) {
            parse_all(&seed[..end]);
        }
        // Random single-byte mutations.
        for _ in 0..200 {
            let mut bytes = seed.clone().into_bytes();
            if bytes.is_empty() {
                continue;
            }
            let at = (rng.next() as usize) % bytes.len();
            bytes[at] = alphabet[(rng.next() as usize) % alphabet.len()];
            parse_all(&String::from_utf8_lossy(&bytes));
        }
    }
    // Random strings from the special alphabet.
    for _ in 0..2000 {
        let len = (rng.next() % 64) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[(rng.next() as usize) % alphabet.len()])
            .collect();
        parse_all(&String::from_utf8_lossy(&bytes));
    }
}
