//! The keys of personal data on PostgreSQL: fields sealed per data subject open until the
//! subject is erased, never after; the key-encryption key is checked and rotated without
//! touching what was sealed.

mod support;

use aisc_adapters::personal_data::{Erasure, KeyEncryptionKey, Opened, Vault, VaultError, rotate_kek};

fn kek_file(name: &str) -> (std::path::PathBuf, KeyEncryptionKey) {
    let directory = std::env::temp_dir().join(format!("aisc-kek-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&directory).expect("directory");
    let path = directory.join(name);
    let kek = KeyEncryptionKey::generate(&path).expect("a KEK");
    (path, kek)
}

#[tokio::test]
async fn a_sealed_field_opens_until_its_subject_is_erased_and_never_after() {
    let database = support::TestDatabase::create().await;
    let (_, kek) = kek_file("kek");
    let vault = Vault::new(database.pool.clone(), kek);
    vault.check().await.expect("an empty key store accepts any KEK");
    let (chan, lee) = (vault.create_subject().await.expect("subject"), vault.create_subject().await.expect("subject"));
    let name = vault.seal(chan, "contact.name", "Chan Tai Man").await.expect("seal");
    let email = vault.seal(chan, "contact.email", "tm.chan@example.hk").await.expect("seal");
    let other = vault.seal(lee, "contact.name", "Lee Siu Ming").await.expect("seal");
    assert!(name.starts_with("xc1.") && !name.contains("Chan"), "{name}");
    assert_ne!(vault.seal(chan, "contact.name", "Chan Tai Man").await.expect("seal"), name, "a fresh nonce each time");

    assert_eq!(vault.open(chan, "contact.name", &name).await.expect("open"), Opened::Text("Chan Tai Man".into()));
    assert!(
        matches!(vault.open(chan, "contact.email", &name).await, Err(VaultError::Tampered { .. })),
        "bound to its field"
    );
    assert!(
        matches!(vault.open(lee, "contact.name", &name).await, Err(VaultError::Tampered { .. })),
        "bound to its subject"
    );
    assert!(matches!(vault.open(chan, "contact.name", "xc1.AAAA").await, Err(VaultError::Tampered { .. })));

    assert_eq!(vault.erase(chan, "admin-1", "retention period over").await.expect("erase"), Erasure::Erased);
    assert_eq!(vault.erase(chan, "admin-1", "again").await.expect("erase"), Erasure::AlreadyErased);
    assert_eq!(vault.erase(uuid::Uuid::new_v4(), "admin-1", "x").await.expect("erase"), Erasure::Unknown);
    assert_eq!(vault.open(chan, "contact.name", &name).await.expect("open"), Opened::Erased);
    assert_eq!(vault.open(chan, "contact.email", &email).await.expect("open"), Opened::Erased);
    assert!(matches!(vault.seal(chan, "contact.name", "x").await, Err(VaultError::Erased(_))));
    assert_eq!(
        vault.open(lee, "contact.name", &other).await.expect("open"),
        Opened::Text("Lee Siu Ming".into()),
        "others stay"
    );

    // The erased key is gone from the table; who erased it and why is kept.
    let (wrapped, erased_by, reason): (Option<Vec<u8>>, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT wrapped_key, erased_by, erasure_reason FROM data_subject_keys WHERE data_subject_id = $1",
    )
    .bind(chan)
    .fetch_one(&database.pool)
    .await
    .expect("row");
    assert_eq!(
        (wrapped, erased_by.as_deref(), reason.as_deref()),
        (None, Some("admin-1"), Some("retention period over"))
    );
    database.drop_database().await;
}

#[tokio::test]
async fn the_kek_is_checked_at_start_and_rotated_without_touching_what_was_sealed() {
    let database = support::TestDatabase::create().await;
    let (old_path, old) = kek_file("old");
    let vault = Vault::new(database.pool.clone(), old);
    let subjects = [vault.create_subject().await.expect("subject"), vault.create_subject().await.expect("subject")];
    let sealed = vault.seal(subjects[0], "project_summary", "Led by Dr Wong Ka Yan").await.expect("seal");
    vault.erase(subjects[1], "admin-1", "request").await.expect("erase");

    // A wrong KEK is refused with the ids of both, before anything is opened.
    let (new_path, new) = kek_file("new");
    let wrong = Vault::new(database.pool.clone(), KeyEncryptionKey::load(&new_path).expect("load"));
    let refused = wrong.check().await.expect_err("the wrong KEK").to_string();
    assert!(refused.contains(&vault.kek_id()) && refused.contains(&new.id()), "{refused}");

    // Rotation: every live key moves to the new KEK in one transaction; the sealed field is the same.
    let old = KeyEncryptionKey::load(&old_path).expect("load");
    assert_eq!(rotate_kek(&database.pool, &old, &new).await.expect("rotate"), 1, "the erased key has nothing to wrap");
    assert_eq!(rotate_kek(&database.pool, &old, &new).await.expect("again"), 0, "idempotent");
    let rotated = Vault::new(database.pool.clone(), new);
    rotated.check().await.expect("the new KEK opens the keys");
    assert_eq!(
        rotated.open(subjects[0], "project_summary", &sealed).await.expect("open"),
        Opened::Text("Led by Dr Wong Ka Yan".into())
    );
    assert_eq!(rotated.open(subjects[1], "project_summary", &sealed).await.expect("open"), Opened::Erased);
    let old_again = Vault::new(database.pool.clone(), old);
    assert!(old_again.check().await.is_err(), "the old KEK no longer opens anything");
    database.drop_database().await;
}

#[tokio::test]
async fn the_command_line_makes_and_rotates_the_kek_with_clear_refusals() {
    let database = support::TestDatabase::create().await;
    let aisc = env!("CARGO_BIN_EXE_aisc");
    let directory = std::env::temp_dir().join(format!("aisc-kek-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&directory).expect("directory");
    let (old, new) = (directory.join("kek-1"), directory.join("kek-2"));
    let run = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(aisc).args(args).env("DATABASE_URL", &database.url).output().expect("run aisc")
    };
    for path in [&old, &new] {
        let made = run(&["privacy".as_ref(), "keygen".as_ref(), "--out".as_ref(), path.as_os_str()]);
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    }
    let again = run(&["privacy".as_ref(), "keygen".as_ref(), "--out".as_ref(), old.as_os_str()]);
    assert_eq!(again.status.code(), Some(4), "never overwritten");

    let vault = Vault::new(database.pool.clone(), KeyEncryptionKey::load(&old).expect("load"));
    let subject = vault.create_subject().await.expect("subject");
    let sealed = vault.seal(subject, "contact.email", "wong@example.hk").await.expect("seal");

    let rotate = |kek: &std::path::Path, next: &std::path::Path| {
        run(&[
            "privacy".as_ref(),
            "rotate-kek".as_ref(),
            "--kek-file".as_ref(),
            kek.as_os_str(),
            "--new-kek-file".as_ref(),
            next.as_os_str(),
        ])
    };
    let same = rotate(&old, &old);
    assert_eq!(same.status.code(), Some(2), "{}", String::from_utf8_lossy(&same.stderr));
    let missing = rotate(&directory.join("nowhere"), &new);
    assert_eq!(missing.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("aisc privacy keygen"), "says how to make one");
    let rotated = rotate(&old, &new);
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    assert!(String::from_utf8_lossy(&rotated.stdout).contains("wrapped 1 data subject key(s)"));

    let after = Vault::new(database.pool.clone(), KeyEncryptionKey::load(&new).expect("load"));
    assert_eq!(
        after.open(subject, "contact.email", &sealed).await.expect("open"),
        Opened::Text("wong@example.hk".into())
    );
    let _ = std::fs::remove_dir_all(&directory);
    database.drop_database().await;
}

#[tokio::test]
async fn serve_refuses_to_start_without_its_key_encryption_key_or_with_another() {
    let database = support::TestDatabase::create().await;
    let serve = |kek: Option<&std::path::Path>| {
        let mut command = support::aisc();
        command.args(["serve"]).env("DATABASE_URL", &database.url).env("AISC_BIND", "127.0.0.1:0");
        match kek {
            Some(path) => command.env("AISC_KEK_FILE", path),
            None => command.env_remove("AISC_KEK_FILE"),
        };
        command.output().expect("run aisc")
    };
    let refused = serve(None);
    assert_eq!(refused.status.code(), Some(2), "a service without its KEK must not start");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("AISC_KEK_FILE is not set") && said.contains("aisc privacy keygen"), "{said}");

    let directory = std::env::temp_dir().join(format!("aisc-kek-serve-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&directory).expect("directory");
    let missing = serve(Some(&directory.join("nowhere")));
    assert_eq!(missing.status.code(), Some(4), "a missing file, as the privacy commands answer it");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"), "names the missing file");

    // A key is wrapped under the suites' KEK; another KEK is refused before the service binds.
    let vault = support::scheme::vault(&database);
    vault.create_subject().await.expect("a subject under the suites' KEK");
    let other = directory.join("other");
    let other_kek = KeyEncryptionKey::generate(&other).expect("another KEK");
    let wrong = serve(Some(&other));
    assert!(!wrong.status.success(), "a service with another KEK must not start");
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(said.contains(&other_kek.id()) && said.contains(&vault.kek_id()), "names both keys' ids: {said}");
    assert!(!said.contains(std::fs::read_to_string(&other).expect("key").trim()), "never the key itself");
    let _ = std::fs::remove_dir_all(&directory);
    database.drop_database().await;
}
