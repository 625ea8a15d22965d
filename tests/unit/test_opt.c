/* test_opt.c - the option table: argv, env, bounds, help, key files. */
#include "test_alloc.h"
#include "pg_opt.h"
#include "pg_log.h"

#include <sys/stat.h>

static pg_config_t cfg;
static char err[PG_ERRLEN];

#define ARGV(...) ((char *[]){ "pushgate", __VA_ARGS__, NULL })
#define NOARGS ((char *[]){ "pushgate", NULL })
#define ENV(...) ((char *[]){ __VA_ARGS__, NULL })

static int argc_of(char **v)
{
    int n = 0;
    while (v[n])
        n++;
    return n;
}

static int run(char **argv, char **envp)
{
    memset(&cfg, 0, sizeof cfg);
    err[0] = '\0';
    return pg_opt_parse(&cfg, argc_of(argv), argv, envp, err, sizeof err);
}

/* Parse must fail, with err containing want and not containing secret. */
static void fails(char **argv, char **envp, const char *want, const char *secret)
{
    int rc = run(argv, envp);
    if (rc != PG_OPT_FAIL)
        fail_msg("%s %s: rc %d, want failure", argv[1], argv[2] ? argv[2] : "", rc);
    if (!strstr(err, want))
        fail_msg("err \"%s\" lacks \"%s\"", err, want);
    assert_null(strchr(err, '\n'));
    if (secret)
        assert_null(strstr(err, secret));
    /* the failed parse freed everything: the config is zeroed */
    assert_null(cfg.listen);
    assert_null(cfg.node_id);
}

static void bad1(const char *opt, const char *val, const char *want)
{
    char flag[64];
    snprintf(flag, sizeof flag, "--%s", opt);
    fails(ARGV(flag, (char *)val), NULL, want, NULL);
}

static void defaults(void **state)
{
    (void)state;
    assert_int_equal(run(NOARGS, NULL), PG_OPT_RUN);
    assert_string_equal(cfg.listen, "0.0.0.0:8080");
    assert_string_equal(cfg.listen_host, "0.0.0.0");
    assert_int_equal(cfg.listen_port, 8080);
    assert_string_equal(cfg.redis_url, "redis://127.0.0.1:6379/0");
    assert_string_equal(cfg.redis.host, "127.0.0.1");
    assert_int_equal(cfg.redis.port, 6379);
    assert_int_equal(cfg.redis.db, 0);
    assert_string_equal(cfg.prefix, "pushgate:");
    char host[256], want[300];
    gethostname(host, sizeof host);
    host[40] = '\0';
    snprintf(want, sizeof want, "%s-%ld", host, (long)getpid());
    assert_string_equal(cfg.node_id, want);
    assert_string_equal(cfg.allowed_origins, "");
    assert_int_equal(cfg.origins.n, 0);
    assert_null(cfg.jwt_secret);
    assert_null(cfg.jwt_secret_file);
    assert_null(cfg.jwt_public_key);
    assert_int_equal(cfg.jwt_public_keys.n, 0);
    assert_null(cfg.jwt_public_pem);
    assert_int_equal(cfg.allow_anonymous, 0);
    assert_string_equal(cfg.public_topics, "");
    assert_int_equal(cfg.public_globs.n, 0);
    assert_null(cfg.api_key);
    assert_null(cfg.api_key_file);
    assert_int_equal(cfg.max_connections, 0);
    assert_int_equal(cfg.max_message_bytes, 65536);
    assert_int_equal(cfg.queue_limit_bytes, 1048576);
    assert_int_equal(cfg.ping_interval, 25);
    assert_int_equal(cfg.history_size, 100);
    assert_int_equal(cfg.history_ttl, 300);
    assert_int_equal(cfg.drain_timeout, 10);
    assert_int_equal(cfg.log_level, PG_LOG_INFO);
    assert_int_equal(cfg.log_json, 0);
    assert_null(cfg.tls_cert);
    assert_null(cfg.tls_key);
    assert_int_equal(cfg.reuse_port, 0);
    pg_config_free(&cfg);
    assert_null(cfg.listen);
    pg_config_free(NULL);
}

static void every_option(void **state)
{
    (void)state;
    char **argv = ARGV("--listen", "127.0.0.1:9000", "--redis-url=redis://:pw@r:7000/2",
                       "--prefix", "app.v1:", "--node-id", "gw-a", "--allowed-origins",
                       "https://a.com, https://*.b.com", "--jwt-secret", "s3", "--allow-anonymous",
                       "--public-topics", "news,public.*", "--api-key=k", "--max-connections", "500",
                       "--max-message-bytes", "16", "--queue-limit-bytes", "1024", "--ping-interval",
                       "3600", "--history-size", "100000", "--history-ttl", "604800",
                       "--drain-timeout", "0", "--log-level", "debug", "--log-format", "json",
                       "--reuse-port", "on");
    assert_int_equal(run(argv, NULL), PG_OPT_RUN);
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 9000);
    assert_string_equal(cfg.redis.password, "pw");
    assert_int_equal(cfg.redis.port, 7000);
    assert_int_equal(cfg.redis.db, 2);
    assert_string_equal(cfg.prefix, "app.v1:");
    assert_string_equal(cfg.node_id, "gw-a");
    assert_int_equal(cfg.origins.n, 2);
    assert_string_equal(cfg.origins.v[1], "https://*.b.com");
    assert_string_equal(cfg.jwt_secret, "s3");
    assert_int_equal(cfg.allow_anonymous, 1);
    assert_int_equal(cfg.public_globs.n, 2);
    assert_string_equal(cfg.public_globs.v[1], "public.*");
    assert_string_equal(cfg.api_key, "k");
    assert_int_equal(cfg.max_connections, 500);
    assert_int_equal(cfg.max_message_bytes, 16);
    assert_int_equal(cfg.queue_limit_bytes, 1024);
    assert_int_equal(cfg.ping_interval, 3600);
    assert_int_equal(cfg.history_size, 100000);
    assert_int_equal(cfg.history_ttl, 604800);
    assert_int_equal(cfg.drain_timeout, 0);
    assert_int_equal(cfg.log_level, PG_LOG_DEBUG);
    assert_int_equal(cfg.log_json, 1);
    assert_int_equal(cfg.reuse_port, 1);
    pg_config_free(&cfg);

    assert_int_equal(run(ARGV("--listen=[::1]:443", "--max-message-bytes", "67108864",
                              "--queue-limit-bytes", "1073741824", "--max-connections", "10000000"),
                         NULL), PG_OPT_RUN);
    assert_string_equal(cfg.listen_host, "::1");
    assert_int_equal(cfg.listen_port, 443);
    assert_int_equal(cfg.max_message_bytes, 67108864);
    assert_int_equal(cfg.queue_limit_bytes, 1073741824);
    assert_int_equal(cfg.max_connections, 10000000);
    pg_config_free(&cfg);
}

static void env_and_precedence(void **state)
{
    (void)state;
    char **env = ENV("PATH=/bin", "PUSHGATE_PING_INTERVAL=30", "PUSHGATE_REDIS_URL=redis://e:1",
                     "PUSHGATE_ALLOW_ANONYMOUS=yes", "PUSHGATE_LOG_LEVEL=", "PUSHGATE_NOPE=1",
                     "PUSHGATE_LISTEN", "PUSHGATE_HELP=1", "pushgate_prefix=lower:");
    assert_int_equal(run(NOARGS, env), PG_OPT_RUN);
    assert_int_equal(cfg.ping_interval, 30);
    assert_string_equal(cfg.redis.host, "e");
    assert_int_equal(cfg.allow_anonymous, 1);
    assert_int_equal(cfg.log_level, PG_LOG_INFO);   /* empty = unset */
    assert_string_equal(cfg.prefix, "pushgate:");   /* names are upper case */
    pg_config_free(&cfg);
    /* A flag beats the environment, in either order of appearance. */
    assert_int_equal(run(ARGV("--ping-interval", "40", "--allow-anonymous=false"), env), PG_OPT_RUN);
    assert_int_equal(cfg.ping_interval, 40);
    assert_int_equal(cfg.allow_anonymous, 0);
    pg_config_free(&cfg);
    /* The last flag wins over an earlier one. */
    assert_int_equal(run(ARGV("--ping-interval", "40", "--ping-interval", "41"), NULL), PG_OPT_RUN);
    assert_int_equal(cfg.ping_interval, 41);
    pg_config_free(&cfg);
    /* A bad env value fails, naming the variable; a flag overriding it does not. */
    fails(NOARGS, ENV("PUSHGATE_HISTORY_SIZE=lots"), "PUSHGATE_HISTORY_SIZE", NULL);
    assert_non_null(strstr(err, "--history-size"));
    assert_int_equal(run(ARGV("--history-size", "5"), ENV("PUSHGATE_HISTORY_SIZE=lots")), PG_OPT_RUN);
    pg_config_free(&cfg);
    fails(NOARGS, ENV("PUSHGATE_REDIS_URL=redis://:topsecret@h:0"), "PUSHGATE_REDIS_URL", "topsecret");
}

static void booleans(void **state)
{
    (void)state;
    const char *yes[] = { "true", "1", "yes", "on", "TRUE", "On" };
    const char *no[] = { "false", "0", "no", "off", "False" };
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(run(ARGV("--reuse-port", (char *)yes[i]), NULL), PG_OPT_RUN);
        assert_int_equal(cfg.reuse_port, 1);
        pg_config_free(&cfg);
    }
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(run(ARGV("--reuse-port", "--allow-anonymous", (char *)no[i]), NULL), PG_OPT_RUN);
        assert_int_equal(cfg.reuse_port, 1);
        assert_int_equal(cfg.allow_anonymous, 0);
        pg_config_free(&cfg);
    }
    /* Standing alone before a non-boolean word: that word is an error, not a value. */
    fails(ARGV("--allow-anonymous", "maybe"), NULL, "unexpected argument", NULL);
    fails(ARGV("--allow-anonymous=maybe"), NULL, "--allow-anonymous", NULL);
    fails(ARGV("--allow-anonymous="), NULL, "--allow-anonymous", NULL);
    fails(NOARGS, ENV("PUSHGATE_REUSE_PORT=2"), "PUSHGATE_REUSE_PORT", NULL);
}

static void bad_values(void **state)
{
    (void)state;
    bad1("ping-interval", "abc", "--ping-interval: \"abc\" is not a whole number of seconds (1..3600)");
    const char *ints[][3] = {
        { "ping-interval", "0", "(1..3600)" },       { "ping-interval", "3601", "(1..3600)" },
        { "ping-interval", "-1", "(1..3600)" },      { "ping-interval", "+5", "(1..3600)" },
        { "ping-interval", " 5", "(1..3600)" },      { "ping-interval", "5 ", "(1..3600)" },
        { "ping-interval", "5s", "(1..3600)" },      { "ping-interval", "1e3", "(1..3600)" },
        { "ping-interval", "", "(1..3600)" },        { "ping-interval", "0x10", "(1..3600)" },
        { "ping-interval", "99999999999999999999999", "(1..3600)" },
        { "ping-interval", "4294967321", "(1..3600)" },  /* 2^32 + 25 must not wrap to 25 */
        { "max-connections", "0", "connections (1..10000000)" },
        { "max-connections", "10000001", "(1..10000000)" },
        { "max-message-bytes", "15", "bytes (16..67108864)" },
        { "max-message-bytes", "67108865", "(16..67108864)" },
        { "queue-limit-bytes", "1023", "bytes (1024..1073741824)" },
        { "queue-limit-bytes", "1073741825", "(1024..1073741824)" },
        { "history-size", "0", "(1..100000)" },      { "history-size", "100001", "(1..100000)" },
        { "history-ttl", "0", "seconds (1..604800)" }, { "history-ttl", "604801", "(1..604800)" },
        { "drain-timeout", "3601", "seconds (0..3600)" }, { "drain-timeout", "-0", "(0..3600)" },
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        bad1(ints[i][0], ints[i][1], ints[i][2]);

    const char *listens[] = { "8080", "host", "host:", "host:0", "host:65536", "host:http", "::1:80",
                              "[::1]80", "[::1]", "[]:80", ":80", "a b:80", "h:80:90", "" };
    for (size_t i = 0; i < sizeof listens / sizeof listens[0]; i++)
        bad1("listen", listens[i], "--listen:");
    bad1("redis-url", "http://x", "--redis-url: must start with redis://");
    bad1("redis-url", "redis://h:99999", "port");
    fails(ARGV("--redis-url", "redis://:hunter2@h:0"), NULL, "--redis-url", "hunter2");
    fails(ARGV("--redis-url", "redis://:hunter2%zz@h"), NULL, "--redis-url", "hunter2");

    char p64[70], p65[70];
    memset(p64, 'p', 64);
    p64[64] = '\0';
    memset(p65, 'p', 65);
    p65[65] = '\0';
    assert_int_equal(run(ARGV("--prefix", p64, "--node-id", p64), NULL), PG_OPT_RUN);
    pg_config_free(&cfg);
    assert_int_equal(run(ARGV("--prefix", "A-z_0.9:"), NULL), PG_OPT_RUN);
    pg_config_free(&cfg);
    const char *prefixes[] = { "", "a b", "a/b", "a@b", "a*", "\xC3\xA9" };
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        bad1("prefix", prefixes[i], "--prefix:");
    bad1("prefix", p65, "--prefix:");
    const char *nodes[] = { "", "a b", "a\tb", "\x01", "\xC3\xA9" };
    for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++)
        bad1("node-id", nodes[i], "--node-id:");
    bad1("node-id", p65, "--node-id:");
    bad1("log-level", "verbose", "--log-level: \"verbose\" is not one of error, warn, info, debug");
    bad1("log-level", "INFO", "--log-level:");
    bad1("log-format", "xml", "--log-format: \"xml\" is not text or json");
    bad1("public-topics", "news, a b", "--public-topics: \"a b\" is not a channel name or glob");
    bad1("public-topics", "a/b", "--public-topics:");
    bad1("allowed-origins", "example.com", "--allowed-origins: \"example.com\" is not an origin");
    assert_int_equal(run(ARGV("--allowed-origins", "*"), NULL), PG_OPT_RUN);
    assert_int_equal(cfg.origins.n, 1);
    pg_config_free(&cfg);
    /* The error line shows a value cut short and without control bytes. */
    char longv[300];
    memset(longv, '9', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    bad1("history-size", longv, "...\" is not");
    bad1("log-level", "a\nb", "\"a?b\"");
}

static void secrets_never_echoed(void **state)
{
    (void)state;
    fails(ARGV("--jwt-secret", ""), NULL, "--jwt-secret: must not be empty", NULL);
    fails(ARGV("--api-key="), NULL, "--api-key: must not be empty", NULL);
    fails(ARGV("--jwt-secrte=hunter2"), NULL, "--jwt-secrte: unknown option", "hunter2");
    fails(ARGV("--api-kee", "hunter2"), NULL, "--api-kee: unknown option", "hunter2");
    /* A secret set and a later error elsewhere: still not in the line. */
    fails(ARGV("--jwt-secret", "hunter2", "--ping-interval", "x"), NULL, "--ping-interval", "hunter2");
    /* Lists stay raw strings here: pg_keys_load splits them. */
    assert_int_equal(run(ARGV("--jwt-secret", "old, new", "--api-key", "k1,k2"), NULL), PG_OPT_RUN);
    assert_string_equal(cfg.jwt_secret, "old, new");
    assert_string_equal(cfg.api_key, "k1,k2");
    pg_config_free(&cfg);
}

static void argv_shape(void **state)
{
    (void)state;
    fails(ARGV("--bogus"), NULL, "--bogus: unknown option", NULL);
    fails(ARGV("--bogus=1"), NULL, "--bogus: unknown option", NULL);
    fails(ARGV("-p", "1"), NULL, "unexpected argument \"-p\"", NULL);
    fails(ARGV("listen"), NULL, "unexpected argument", NULL);
    fails(ARGV("--"), NULL, "unknown option", NULL);
    fails(ARGV("--listen"), NULL, "--listen: missing value", NULL);
    fails(ARGV("--listen", "--prefix", "x"), NULL, "--listen: missing value", NULL);
    /* "--name=" gives an explicitly empty value. */
    fails(ARGV("--listen="), NULL, "--listen:", NULL);
}

static void help_and_version(void **state)
{
    (void)state;
    assert_int_equal(run(ARGV("--help"), NULL), PG_OPT_HELP);
    assert_int_equal(run(ARGV("--ping-interval", "5", "--help"), ENV("PUSHGATE_PING_INTERVAL=bad")),
                     PG_OPT_HELP);
    assert_int_equal(run(ARGV("--version"), NULL), PG_OPT_VERSION);
    assert_int_equal(run(ARGV("--version", "--help"), NULL), PG_OPT_HELP);
    assert_int_equal(run(ARGV("--bogus", "--help"), NULL), PG_OPT_FAIL);

    FILE *f = tmpfile();
    pg_opt_help(f);
    long n = ftell(f);
    rewind(f);
    char *text = malloc((size_t)n + 1);
    assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
    text[n] = '\0';
    fclose(f);
    const char *must[] = {
        "--listen", "PUSHGATE_LISTEN", "0.0.0.0:8080", "--redis-url", "PUSHGATE_REDIS_URL",
        "redis://127.0.0.1:6379/0", "--prefix", "pushgate:", "--node-id", "<hostname>-<pid>",
        "--allowed-origins", "--jwt-secret", "PUSHGATE_JWT_SECRET", "--jwt-public-key",
        "--jwt-secret-file", "PUSHGATE_JWT_SECRET_FILE", "--api-key-file", "PUSHGATE_API_KEY_FILE",
        "comma list of files", "JWKS",
        "--allow-anonymous", "PUSHGATE_ALLOW_ANONYMOUS", "--public-topics", "--api-key",
        "--max-connections", "derived from the fd limit", "--max-message-bytes", "65536",
        "--queue-limit-bytes", "1048576", "--ping-interval", "PUSHGATE_PING_INTERVAL",
        "--history-size", "--history-ttl", "--drain-timeout", "--log-level", "info",
        "--log-format", "--tls-cert", "PUSHGATE_TLS_CERT", "--tls-key", "--reuse-port",
        "PUSHGATE_REUSE_PORT", "--help", "--version",
    };
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
        if (!strstr(text, must[i]))
            fail_msg("--help lacks %s", must[i]);
    free(text);
    assert_string_equal(PG_VERSION, "0.1.0");
}

static char dir[64];
static char pem_path[128], pem2_path[128], cert_path[128], key_path[128];

static int files_setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/pg_opt_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(pem_path, sizeof pem_path, "%s/pub.pem", dir);
    snprintf(pem2_path, sizeof pem2_path, "%s/keys.json", dir);
    snprintf(cert_path, sizeof cert_path, "%s/cert.pem", dir);
    snprintf(key_path, sizeof key_path, "%s/key.pem", dir);
    const char *paths[] = { pem_path, cert_path, key_path, pem2_path };
    for (int i = 0; i < 4; i++) {
        FILE *f = fopen(paths[i], "w");
        if (!f)
            return -1;
        fputs("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", f);
        fclose(f);
    }
    return 0;
}

static int files_teardown(void **state)
{
    (void)state;
    unlink(pem_path);
    unlink(pem2_path);
    unlink(cert_path);
    unlink(key_path);
    rmdir(dir);
    return 0;
}

static void key_files(void **state)
{
    (void)state;
    assert_int_equal(run(ARGV("--jwt-public-key", pem_path), NULL), PG_OPT_RUN);
    assert_string_equal(cfg.jwt_public_key, pem_path);
    assert_non_null(cfg.jwt_public_pem);
    assert_int_equal(cfg.jwt_public_pem_len, 57);
    assert_int_equal(strncmp(cfg.jwt_public_pem, "-----BEGIN PUBLIC KEY-----\n", 27), 0);
    assert_int_equal(cfg.jwt_public_pem[57], '\0');
    pg_config_free(&cfg);
    char missing[160];
    snprintf(missing, sizeof missing, "%s/nope.pem", dir);
    fails(ARGV("--jwt-public-key", missing), NULL, "--jwt-public-key: cannot read", NULL);
    assert_non_null(strstr(err, "No such file"));
    fails(ARGV("--jwt-public-key", dir), NULL, "--jwt-public-key: cannot read", NULL);
    fails(NOARGS, ENV("PUSHGATE_JWT_PUBLIC_KEY=/nonexistent/k.pem"), "PUSHGATE_JWT_PUBLIC_KEY", NULL);

    /* A comma list: every file must be readable; the first one's text is
     * kept for callers that take one PEM. */
    char list[400];
    snprintf(list, sizeof list, " %s , %s,", pem2_path, pem_path);
    assert_int_equal(run(ARGV("--jwt-public-key", list), NULL), PG_OPT_RUN);
    assert_string_equal(cfg.jwt_public_key, list);
    assert_int_equal(cfg.jwt_public_keys.n, 2);
    assert_string_equal(cfg.jwt_public_keys.v[0], pem2_path);
    assert_string_equal(cfg.jwt_public_keys.v[1], pem_path);
    assert_int_equal(cfg.jwt_public_pem_len, 57);
    pg_config_free(&cfg);
    assert_int_equal(cfg.jwt_public_keys.n, 0);
    snprintf(list, sizeof list, "%s,%s", pem_path, missing);
    fails(ARGV("--jwt-public-key", list), NULL, "--jwt-public-key: cannot read \"", NULL);
    assert_non_null(strstr(err, "nope.pem\": No such file"));
    snprintf(list, sizeof list, "%s,%s", pem_path, dir);
    fails(ARGV("--jwt-public-key", list), NULL, "--jwt-public-key: cannot read", NULL);
    assert_non_null(strstr(err, "Is a directory"));
    fails(ARGV("--jwt-public-key", " , "), NULL, "--jwt-public-key: names no file", NULL);

    /* Secret files: readable at start (pg_keys_load reads them, then and
     * on SIGHUP). */
    assert_int_equal(run(ARGV("--jwt-secret-file", cert_path, "--api-key-file", key_path), NULL), PG_OPT_RUN);
    assert_string_equal(cfg.jwt_secret_file, cert_path);
    assert_string_equal(cfg.api_key_file, key_path);
    pg_config_free(&cfg);
    char envs[2][200];
    snprintf(envs[0], sizeof envs[0], "PUSHGATE_JWT_SECRET_FILE=%s", key_path);
    snprintf(envs[1], sizeof envs[1], "PUSHGATE_API_KEY_FILE=%s", cert_path);
    assert_int_equal(run(NOARGS, ENV(envs[0], envs[1])), PG_OPT_RUN);
    assert_string_equal(cfg.jwt_secret_file, key_path);
    assert_string_equal(cfg.api_key_file, cert_path);
    pg_config_free(&cfg);
    fails(ARGV("--jwt-secret-file", missing), NULL, "--jwt-secret-file: cannot read", NULL);
    fails(ARGV("--api-key-file", missing), NULL, "--api-key-file: cannot read", NULL);
    fails(ARGV("--api-key-file", dir), NULL, "--api-key-file: cannot read", NULL);
    assert_non_null(strstr(err, "Is a directory"));
    fails(ARGV("--jwt-secret-file="), NULL, "--jwt-secret-file: cannot read", NULL);
    fails(NOARGS, ENV("PUSHGATE_API_KEY_FILE=/nonexistent/k"), "PUSHGATE_API_KEY_FILE (--api-key-file)", NULL);

    assert_int_equal(run(ARGV("--tls-cert", cert_path, "--tls-key", key_path), NULL), PG_OPT_RUN);
    assert_string_equal(cfg.tls_cert, cert_path);
    assert_string_equal(cfg.tls_key, key_path);
    pg_config_free(&cfg);
    fails(ARGV("--tls-cert", cert_path), NULL, "--tls-cert and --tls-key", NULL);
    fails(ARGV("--tls-key", key_path), NULL, "--tls-cert and --tls-key", NULL);
    fails(ARGV("--tls-cert", missing, "--tls-key", key_path), NULL, "--tls-cert: cannot read", NULL);
    fails(ARGV("--tls-cert", cert_path, "--tls-key", missing), NULL, "--tls-key: cannot read", NULL);
}

static void out_of_memory(void **state)
{
    (void)state;
    char list[300];
    snprintf(list, sizeof list, "%s,%s", pem_path, pem2_path);
    char **argv = ARGV("--allowed-origins", "https://a.com,https://b.com", "--public-topics", "a,b,c",
                       "--jwt-secret", "s", "--jwt-public-key", list, "--api-key", "k",
                       "--jwt-secret-file", cert_path, "--api-key-file", key_path);
    int ran = 0;
    for (long k = 0; k < 80; k++) {
        pg_test_fail_after = k;
        int rc = run(argv, NULL);
        pg_test_fail_after = -1;
        if (rc == PG_OPT_RUN) {
            ran++;
            pg_config_free(&cfg);
        } else {
            assert_int_equal(rc, PG_OPT_FAIL);
            assert_non_null(strstr(err, "out of memory"));
        }
    }
    assert_true(ran > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(every_option),
        cmocka_unit_test(env_and_precedence),
        cmocka_unit_test(booleans),
        cmocka_unit_test(bad_values),
        cmocka_unit_test(secrets_never_echoed),
        cmocka_unit_test(argv_shape),
        cmocka_unit_test(help_and_version),
        cmocka_unit_test(key_files),
        cmocka_unit_test(out_of_memory),
    };
    return cmocka_run_group_tests(tests, files_setup, files_teardown);
}
