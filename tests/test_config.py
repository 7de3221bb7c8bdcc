"""featurestore.yaml: defaults, paths, ${VAR} expansion, and an error for every invalid file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from featurestore.config import CONFIG_FILE, AlertsConfig, WebhookConfig, find_repo, load_config
from featurestore.errors import ConfigError


def write_config(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / CONFIG_FILE).write_text(text)
    return root


def config_error(root: Path, text: str) -> str:
    """The message of the ConfigError that loading ``text`` raises."""
    write_config(root, text)
    with pytest.raises(ConfigError) as exc:
        load_config(root)
    return str(exc.value)


class TestDefaults:
    def test_minimal_file(self, tmp_path: Path) -> None:
        root = write_config(tmp_path / "repo", "project: my_project\n")
        cfg = load_config(root)
        resolved = root.resolve()
        assert cfg.project == "my_project"
        assert cfg.repo_path == resolved
        assert cfg.registry_path == resolved / "data" / "registry.db"
        assert cfg.offline_store_path == resolved / "data" / "offline"
        assert cfg.online_store_path == resolved / "data" / "online"
        assert cfg.online_store_url is None and cfg.online_store_cluster is False
        assert cfg.data_dir == resolved / "data"

    def test_online_store_url_from_environment_is_not_in_repr(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FS_TEST_REDIS_PASSWORD", "s3cret")
        root = write_config(
            tmp_path, "project: p\nonline_store:\n  url: rediss://:${FS_TEST_REDIS_PASSWORD}@cache:6380/2\n  cluster: true\n"
        )
        cfg = load_config(root)
        assert cfg.online_store_url == "rediss://:s3cret@cache:6380/2"
        assert cfg.online_store_cluster is True
        assert "s3cret" not in repr(cfg)

    def test_online_store_shorthand_is_the_url(self, tmp_path: Path) -> None:
        cfg = load_config(write_config(tmp_path, "project: p\nonline_store: redis://localhost:6379/0\n"))
        assert cfg.online_store_url == "redis://localhost:6379/0"

    def test_default_repo_is_the_current_directory(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        root = write_config(tmp_path / "repo", "project: here\n")
        monkeypatch.chdir(root)
        cfg = load_config()
        assert cfg.project == "here"
        assert cfg.repo_path == root.resolve()

    def test_null_sections_use_defaults(self, tmp_path: Path) -> None:
        root = write_config(tmp_path, "project: p\nregistry:\noffline_store: {}\n")
        cfg = load_config(root)
        assert cfg.registry_path == tmp_path.resolve() / "data" / "registry.db"
        assert cfg.offline_store_path == tmp_path.resolve() / "data" / "offline"

    @pytest.mark.parametrize("name", ["a", "A1_b", "Project_2", "p" * 63])
    def test_valid_project_names(self, tmp_path: Path, name: str) -> None:
        assert load_config(write_config(tmp_path, f"project: {name}\n")).project == name


class TestPaths:
    def test_relative_paths_resolve_against_repo_root(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        root = write_config(tmp_path / "repo", "project: p\nregistry:\n  path: meta/reg.db\noffline_store:\n  path: ../store\n")
        monkeypatch.chdir(tmp_path)  # not the repo: paths must not depend on the working directory
        cfg = load_config(root)
        assert cfg.registry_path == root.resolve() / "meta" / "reg.db"
        assert cfg.offline_store_path == root.resolve() / ".." / "store"

    def test_absolute_paths_are_kept(self, tmp_path: Path) -> None:
        reg = tmp_path / "elsewhere" / "reg.db"
        off = tmp_path / "lake"
        root = write_config(tmp_path / "repo", f"project: p\nregistry:\n  path: {reg}\noffline_store:\n  path: {off}\n")
        cfg = load_config(root)
        assert cfg.registry_path == reg
        assert cfg.offline_store_path == off

    def test_string_shorthand(self, tmp_path: Path) -> None:
        root = write_config(tmp_path, "project: p\nregistry: some/path.db\noffline_store: lake\n")
        cfg = load_config(root)
        assert cfg.registry_path == tmp_path.resolve() / "some" / "path.db"
        assert cfg.offline_store_path == tmp_path.resolve() / "lake"

    def test_home_is_expanded(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        root = write_config(tmp_path / "repo", "project: p\nregistry: ~/fs/reg.db\n")
        assert load_config(root).registry_path == tmp_path / "home" / "fs" / "reg.db"

    @pytest.mark.parametrize(("value", "shown"), [("5", "5"), ("''", "''"), ("[a, b]", r"\['a', 'b'\]")])
    def test_path_must_be_a_string(self, tmp_path: Path, value: str, shown: str) -> None:
        msg = config_error(tmp_path, f"project: p\nregistry:\n  path: {value}\n")
        assert re.search(rf"'registry\.path' must be a path string, got {shown}$", msg), msg

    def test_offline_path_null(self, tmp_path: Path) -> None:
        msg = config_error(tmp_path, "project: p\noffline_store:\n  path: null\n")
        assert msg.endswith("'offline_store.path' must be a path string, got None")

    @pytest.mark.parametrize(("value", "kind"), [("[a.db]", "list"), ("5", "int"), ("true", "bool")])
    def test_section_must_be_a_mapping(self, tmp_path: Path, value: str, kind: str) -> None:
        msg = config_error(tmp_path, f"project: p\nregistry: {value}\n")
        assert msg.endswith(f"'registry' must be a mapping, got {kind}")


class TestEnvironment:
    def test_variable_is_expanded(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FS_TEST_REGISTRY", str(tmp_path / "secret.db"))
        root = write_config(tmp_path / "repo", "project: p\nregistry:\n  path: ${FS_TEST_REGISTRY}\n")
        assert load_config(root).registry_path == tmp_path / "secret.db"

    def test_variable_inside_a_string_and_in_project(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FS_TEST_DIR", "shared")
        monkeypatch.setenv("FS_TEST_ENV", "prod")
        root = write_config(tmp_path, "project: fraud_${FS_TEST_ENV}\noffline_store: ${FS_TEST_DIR}/${FS_TEST_ENV}/lake\n")
        cfg = load_config(root)
        assert cfg.project == "fraud_prod"
        assert cfg.offline_store_path == tmp_path.resolve() / "shared" / "prod" / "lake"

    def test_dollar_without_braces_is_literal(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FS_TEST_DIR", "shared")
        root = write_config(tmp_path, "project: p\nregistry: $FS_TEST_DIR/reg.db\n")
        assert load_config(root).registry_path == tmp_path.resolve() / "$FS_TEST_DIR" / "reg.db"

    def test_unset_variable(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("FS_TEST_UNSET", raising=False)
        msg = config_error(tmp_path, "project: p\nregistry:\n  path: ${FS_TEST_UNSET}/reg.db\n")
        assert msg == f"{tmp_path.resolve() / CONFIG_FILE}: environment variable FS_TEST_UNSET is not set (used as ${{FS_TEST_UNSET}})"

    def test_empty_variable_is_an_empty_path(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FS_TEST_EMPTY", "")
        msg = config_error(tmp_path, "project: p\nregistry:\n  path: ${FS_TEST_EMPTY}\n")
        assert msg.endswith("'registry.path' must be a path string, got ''")


class TestInvalid:
    def test_unknown_top_level_key(self, tmp_path: Path) -> None:
        msg = config_error(tmp_path, "project: p\nregistery: x.db\n")
        assert msg == (f"{tmp_path.resolve() / CONFIG_FILE}: unknown key 'registery'; valid keys are "
                       "alerts.airflow, alerts.log, alerts.webhook.headers, alerts.webhook.retries, "
                       "alerts.webhook.timeout_seconds, alerts.webhook.url, "
                       "offline_store.path, online_store.cluster, online_store.path, online_store.url, "
                       "project, registry.path")

    def test_online_store_url_scheme(self, tmp_path: Path) -> None:
        msg = config_error(tmp_path, "project: p\nonline_store:\n  url: http://:secret@host:6379\n")
        assert "'online_store.url' must start with redis:// or rediss:// or unix://" in msg
        assert "secret" not in msg and "http://:***@host:6379" in msg

    def test_online_store_cluster_needs_url(self, tmp_path: Path) -> None:
        msg = config_error(tmp_path, "project: p\nonline_store:\n  cluster: true\n")
        assert msg.endswith("'online_store.cluster: true' needs 'online_store.url' (the embedded server is standalone)")

    def test_online_store_cluster_must_be_bool(self, tmp_path: Path) -> None:
        msg = config_error(tmp_path, "project: p\nonline_store:\n  url: redis://h:1\n  cluster: 'yes'\n")
        assert msg.endswith("'online_store.cluster' must be true or false, got 'yes'")

    @pytest.mark.parametrize(
        ("text", "key", "valid"),
        [
            ("registry:\n  file: x.db\n", "registry.file", "registry.path"),
            ("offline_store:\n  path: x\n  type: s3\n", "offline_store.type", "offline_store.path"),
        ],
    )
    def test_unknown_nested_key(self, tmp_path: Path, text: str, key: str, valid: str) -> None:
        msg = config_error(tmp_path, "project: p\n" + text)
        assert msg.endswith(f"unknown key '{key}'; valid keys are {valid}")

    @pytest.mark.parametrize(
        ("text", "shown"),
        [
            ("project: 1abc\n", "'1abc'"),
            ("project: my-project\n", "'my-project'"),
            ("project: _private\n", "'_private'"),
            ("project: my project\n", "'my project'"),
            (f"project: {'p' * 64}\n", f"'{'p' * 64}'"),
            ("project: ''\n", "''"),
            ("project: 123\n", "123"),
            ("project:\n", "None"),
            ("project: [a]\n", r"\['a'\]"),
            ("registry: x.db\n", "None"),
        ],
        ids=["digit-first", "dash", "underscore-first", "space", "too-long", "empty", "int", "null", "list", "missing"],
    )
    def test_bad_project(self, tmp_path: Path, text: str, shown: str) -> None:
        msg = config_error(tmp_path, text)
        assert re.search(
            rf"'project' must be a name of letters, digits and underscores starting with a letter, got {shown}$", msg
        ), msg

    def test_project_with_trailing_newline_is_rejected(self, tmp_path: Path) -> None:
        config_error(tmp_path, 'project: "abc\\n"\n')

    def test_empty_file(self, tmp_path: Path) -> None:
        msg = config_error(tmp_path, "")
        assert msg.endswith("'project' must be a name of letters, digits and underscores starting with a letter, got None")

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"no featurestore\.yaml in .*: run the command inside a feature repo or pass --repo PATH") as exc:
            load_config(tmp_path)
        assert str(tmp_path.resolve()) in str(exc.value)
        assert "'project: NAME'" in str(exc.value)

    def test_missing_directory(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="--repo PATH"):
            load_config(tmp_path / "nope")

    def test_invalid_yaml_names_file_and_line(self, tmp_path: Path) -> None:
        msg = config_error(tmp_path, "project: p\nregistry: : :\n")
        assert msg == f"{tmp_path.resolve() / CONFIG_FILE}:2: invalid YAML: mapping values are not allowed here"

    def test_invalid_yaml_unclosed_bracket(self, tmp_path: Path) -> None:
        msg = config_error(tmp_path, "project: p\n\n\nregistry: [a\n")
        assert msg.startswith(f"{tmp_path.resolve() / CONFIG_FILE}:5: invalid YAML: ")

    @pytest.mark.parametrize("text", ["- project: p\n", "just a string\n", "42\n"])
    def test_not_a_mapping(self, tmp_path: Path, text: str) -> None:
        msg = config_error(tmp_path, text)
        assert msg == f"{tmp_path.resolve() / CONFIG_FILE}: expected a mapping of keys, such as 'project: my_project'"


class TestFindRepo:
    def test_directory_with_config(self, tmp_path: Path) -> None:
        root = write_config(tmp_path / "repo", "project: p\n")
        assert find_repo(root) == root.resolve()

    def test_path_to_the_config_file(self, tmp_path: Path) -> None:
        root = write_config(tmp_path / "repo", "project: p\n")
        assert find_repo(root / CONFIG_FILE) == root.resolve()
        assert load_config(root / CONFIG_FILE).project == "p"

    def test_current_directory(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        root = write_config(tmp_path / "repo", "project: p\n")
        monkeypatch.chdir(root)
        assert find_repo() == root.resolve()

    def test_does_not_search_parent_directories(self, tmp_path: Path) -> None:
        root = write_config(tmp_path / "repo", "project: p\n")
        (root / "sub").mkdir()
        with pytest.raises(ConfigError, match=rf"no featurestore\.yaml in {re.escape(str((root / 'sub').resolve()))}: .*--repo PATH"):
            find_repo(root / "sub")

    def test_a_directory_named_like_the_file_is_not_a_config(self, tmp_path: Path) -> None:
        (tmp_path / CONFIG_FILE).mkdir()
        with pytest.raises(ConfigError, match="--repo PATH"):
            find_repo(tmp_path)


class TestAlerts:
    WEBHOOK = (
        "project: p\n"
        "alerts:\n"
        "  webhook:\n"
        "    url: ${FS_TEST_HOOK_URL}\n"
        '    headers: {Authorization: "Bearer ${FS_TEST_HOOK_TOKEN}", X-Team: risk}\n'
        "    timeout_seconds: 2.5\n"
        "    retries: 0\n"
        "  airflow: true\n"
    )

    def test_defaults(self, tmp_path: Path) -> None:
        alerts = load_config(write_config(tmp_path, "project: p\n")).alerts
        assert alerts == AlertsConfig(log=True, webhook=None, airflow=False)

    def test_null_and_empty_sections_are_the_defaults(self, tmp_path: Path) -> None:
        assert load_config(write_config(tmp_path, "project: p\nalerts:\n")).alerts == AlertsConfig()
        assert load_config(write_config(tmp_path, "project: p\nalerts:\n  webhook:\n")).alerts == AlertsConfig()

    def test_webhook_with_variables(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FS_TEST_HOOK_URL", "https://hooks.example.com/T000/B000/XyZsecret")
        monkeypatch.setenv("FS_TEST_HOOK_TOKEN", "tok3n")
        alerts = load_config(write_config(tmp_path, self.WEBHOOK)).alerts
        assert alerts.log is True and alerts.airflow is True
        assert alerts.webhook == WebhookConfig(
            url="https://hooks.example.com/T000/B000/XyZsecret",
            headers={"Authorization": "Bearer tok3n", "X-Team": "risk"},
            timeout_seconds=2.5,
            retries=0,
        )

    def test_webhook_defaults_and_shorthand(self, tmp_path: Path) -> None:
        alerts = load_config(write_config(tmp_path, "project: p\nalerts:\n  log: false\n  webhook: http://hooks:8080/a\n")).alerts
        assert alerts == AlertsConfig(log=False, webhook=WebhookConfig(url="http://hooks:8080/a"), airflow=False)
        assert alerts.webhook is not None
        assert (dict(alerts.webhook.headers), alerts.webhook.timeout_seconds, alerts.webhook.retries) == ({}, 5.0, 2)

    def test_repr_hides_the_url_and_header_values(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FS_TEST_HOOK_URL", "https://user:pw1@hooks.example.com/T000/B000/XyZsecret?key=k3y")
        monkeypatch.setenv("FS_TEST_HOOK_TOKEN", "tok3n")
        cfg = load_config(write_config(tmp_path, self.WEBHOOK))
        text = repr(cfg)
        for secret in ("pw1", "XyZsecret", "k3y", "tok3n", "risk", "T000"):
            assert secret not in text
        assert repr(cfg.alerts.webhook) == (
            "WebhookConfig(url='https://***@hooks.example.com/***', headers=[Authorization, X-Team], "
            "timeout_seconds=2.5, retries=0)"
        )

    def test_headers_are_read_only(self, tmp_path: Path) -> None:
        webhook = WebhookConfig(url="https://h/x", headers={"A": "1"})
        with pytest.raises(TypeError):
            webhook.headers["A"] = "2"  # type: ignore[index]
        assert hash(AlertsConfig(webhook=webhook)) == hash(AlertsConfig(webhook=WebhookConfig(url="https://h/x")))

    @pytest.mark.parametrize(
        ("text", "key", "valid"),
        [
            ("alerts:\n  slack: x\n", "alerts.slack",
             "alerts.airflow, alerts.log, alerts.webhook.headers, alerts.webhook.retries, "
             "alerts.webhook.timeout_seconds, alerts.webhook.url"),
            ("alerts:\n  webhook:\n    url: https://h/x\n    timeout: 3\n", "alerts.webhook.timeout",
             "alerts.webhook.headers, alerts.webhook.retries, alerts.webhook.timeout_seconds, alerts.webhook.url"),
        ],
    )
    def test_unknown_key(self, tmp_path: Path, text: str, key: str, valid: str) -> None:
        msg = config_error(tmp_path, "project: p\n" + text)
        assert msg == f"{tmp_path.resolve() / CONFIG_FILE}: unknown key '{key}'; valid keys are {valid}"

    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            ("ftp://hooks.example.com/T0/s3cret", "'ftp://hooks.example.com/***' (redacted)"),
            ("hooks.example.com/T0/s3cret", "'***' (redacted)"),
            ("https://:s3cret@/path", "'https://***@/***' (redacted)"),
            ("'https://hooks.example.com:99999/s3cret'", "'***' (redacted)"),
            ("'https://hooks.example.com/a b/s3cret'", "'https://hooks.example.com/***' (redacted)"),
            ("''", "'' (redacted)"),
            ("42", "int"),
        ],
        ids=["ftp", "no-scheme", "no-host", "bad-port", "space", "empty", "int"],
    )
    def test_bad_url(self, tmp_path: Path, url: str, shown: str) -> None:
        msg = config_error(tmp_path, f"project: p\nalerts:\n  webhook:\n    url: {url}\n")
        assert msg.endswith(f"'alerts.webhook.url' must be an http:// or https:// URL with a host, got {shown}")
        assert "s3cret" not in msg

    def test_url_from_an_empty_variable(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FS_TEST_HOOK_URL", "")
        msg = config_error(tmp_path, "project: p\nalerts:\n  webhook: ${FS_TEST_HOOK_URL}\n")
        assert msg.endswith("'alerts.webhook.url' must be an http:// or https:// URL with a host, got '' (redacted)")

    def test_url_from_an_unset_variable(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("FS_TEST_HOOK_URL", raising=False)
        msg = config_error(tmp_path, "project: p\nalerts:\n  webhook:\n    url: ${FS_TEST_HOOK_URL}\n")
        assert msg.endswith("environment variable FS_TEST_HOOK_URL is not set (used as ${FS_TEST_HOOK_URL})")

    @pytest.mark.parametrize(
        ("text", "error"),
        [
            ("alerts: true\n", "'alerts' must be a mapping, got bool"),
            ("alerts:\n  log: 'yes'\n", "'alerts.log' must be true or false, got 'yes'"),
            ("alerts:\n  airflow: 1\n", "'alerts.airflow' must be true or false, got 1"),
            ("alerts:\n  webhook: [https://h/x]\n", "'alerts.webhook' must be a mapping or a URL, got list"),
            ("alerts:\n  webhook:\n    retries: 1\n",
             "'alerts.webhook' needs 'url' (the http:// or https:// address to POST to)"),
            ("alerts:\n  webhook:\n    url: https://h/x\n    timeout_seconds: 0\n",
             "'alerts.webhook.timeout_seconds' must be a number of seconds above 0 and at most 300, got 0"),
            ("alerts:\n  webhook:\n    url: https://h/x\n    timeout_seconds: '5'\n",
             "'alerts.webhook.timeout_seconds' must be a number of seconds above 0 and at most 300, got '5'"),
            ("alerts:\n  webhook:\n    url: https://h/x\n    retries: -1\n",
             "'alerts.webhook.retries' must be a whole number from 0 to 10, got -1"),
            ("alerts:\n  webhook:\n    url: https://h/x\n    retries: true\n",
             "'alerts.webhook.retries' must be a whole number from 0 to 10, got True"),
            ("alerts:\n  webhook:\n    url: https://h/x\n    headers: [a]\n",
             "'alerts.webhook.headers' must be a mapping of header names to values, got list"),
            ("alerts:\n  webhook:\n    url: https://h/x\n    headers: {'X Token': abc}\n",
             "'alerts.webhook.headers' has an invalid header name 'X Token'"),
            ("alerts:\n  webhook:\n    url: https://h/x\n    headers: {X-Token: 12345}\n",
             "'alerts.webhook.headers.X-Token' must be a string, got int (quote it in the YAML)"),
        ],
    )
    def test_invalid(self, tmp_path: Path, text: str, error: str) -> None:
        msg = config_error(tmp_path, "project: p\n" + text)
        assert msg == f"{tmp_path.resolve() / CONFIG_FILE}: {error}"

    def test_header_value_with_a_line_break_is_not_shown(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FS_TEST_HOOK_TOKEN", "tok3n\r\nX-Evil: 1")
        msg = config_error(tmp_path, "project: p\nalerts:\n  webhook:\n    url: https://h/x\n"
                                     "    headers: {Authorization: '${FS_TEST_HOOK_TOKEN}'}\n")
        assert msg.endswith("'alerts.webhook.headers.Authorization' must be one line (it holds a line break)")
        assert "tok3n" not in msg
