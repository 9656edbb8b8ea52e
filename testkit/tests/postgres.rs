//! The throwaway PostgreSQL the process tests use: it starts, keeps data across a crash-restart,
//! and answers on the port it names.

use objsync_testkit::postgres::TempPostgres;

#[test]
fn a_temporary_postgres_keeps_committed_rows_across_an_immediate_restart() {
    let pg = TempPostgres::start().expect("PostgreSQL");
    pg.create_database("probe").unwrap();
    pg.psql("probe", "CREATE TABLE t(k int primary key, v text)")
        .unwrap();
    pg.psql("probe", "INSERT INTO t VALUES (1, 'one'), (2, 'two')")
        .unwrap();
    pg.restart().unwrap();
    let rows = pg.psql("probe", "SELECT k, v FROM t ORDER BY k").unwrap();
    assert_eq!(rows, "1|one\n2|two\n");
    assert!(pg.connstr().contains(&format!("port={}", pg.port())));
    assert!(pg.psql("probe", "SELECT * FROM missing").is_err());
}
