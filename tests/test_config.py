from pathlib import Path

import pytest

from newsletter.config import load_settings, secret_key
from newsletter.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "newsletter.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_loads() -> None:
    settings = load_settings(Path(__file__).parent.parent / "examples" / "newsletter.toml")
    assert settings.timezone.key == "Asia/Shanghai"
    assert settings.category_names == ("models", "products", "robotics", "opinion")
    assert settings.smtp is None  # the Maildir outbox is the default transport
    assert settings.store_path.parent.name == "subscribers"


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    settings = load_settings()
    assert settings.config_file is None
    assert settings.store_path == tmp_path / "subscribers" / "newsletter.db"
    assert settings.outbox_dir == tmp_path / "outbox"
    assert settings.max_html_bytes == 100_000


def test_env_variable_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[newsletter]\nname = "From env"\n')
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(path))
    assert load_settings().name == "From env"


@pytest.mark.parametrize(("text", "message"), [
    ('[newsletter]\nnmae = "x"\n', "newsletter.nmae: unknown key"),
    ('[newsletter]\nname = 3\n', "newsletter.name: must be a str, not int"),
    ('[newsletter]\ntimezone = "Mars/Base"\n', "newsletter.timezone: unknown IANA timezone"),
    ('[newsletter]\nbase_url = "example.com"\n', "newsletter.base_url: must start with https://"),
    ('[smtp]\nhost = "h"\npassword = "p"\n', "smtp.password: secrets never go in the file"),
    ('[smtp]\nhost = "h"\ntls = "ssl"\n', "smtp.tls: must be"),
    ('[send]\nconcurrency = 0\n', "send.concurrency: must be a finite positive number"),
    ('[[categories]]\nlabel = "x"\n', "categories[0].name: required"),
    ('[[categories]]\nname = "a"\n[[categories]]\nname = "a"\n', "duplicate category"),
    ('[bogus]\n', "bogus: unknown key"),
    ('[newsletter\n', "invalid TOML"),
])
def test_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_smtp_password_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "s3cret")
    settings = load_settings(write(tmp_path, '[smtp]\nhost = "mail.example"\ntls = "implicit"\n'))
    assert settings.smtp is not None
    assert (settings.smtp.password, settings.smtp.port) == ("s3cret", 465)
    assert "s3cret" not in repr(settings)


def test_secret_key_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY is not set"):
        secret_key()
    assert secret_key(development=True)
