"""The catalog's notify: section: what it accepts and what it refuses, with file:line."""

from __future__ import annotations

from pathlib import Path

from blumeops.lab.loader import load_lab

LAB = """lab: t
hosts:
  box: {role: compute, os: linux, local: true}
notify:
  targets:
%s
"""


def load(tmp_path: Path, targets: str) -> list[str]:
    (tmp_path / "lab.yaml").write_text(LAB % targets)
    result = load_lab(tmp_path / "lab.yaml")
    return [f"{Path(d.file).name}:{d.line}: {d.message}" for d in result.errors]


def test_targets_by_reference_or_plain_url(tmp_path: Path) -> None:
    assert load(tmp_path, "    phone: {url: 'vault:notify/ntfy'}\n"
                          "    hook: {url: 'json://127.0.0.1:9/x', events: [sync-failed]}") == []
    result = load_lab(tmp_path / "lab.yaml")
    assert result.lab is not None and result.lab.notify is not None
    assert result.lab.notify.targets["phone"].events[0] == "sync-failed"  # default: all
    assert len(result.lab.notify.targets["phone"].events) == 8


def test_a_password_in_a_plain_url_is_refused(tmp_path: Path) -> None:
    (err,) = load(tmp_path, "    mail: {url: 'mailtos://me:hunter2@example.com'}")
    assert err.startswith("lab.yaml:6:") and "vault" in err, err
    assert "hunter2" not in err


def test_unknown_event_and_bad_url_are_refused(tmp_path: Path) -> None:
    errs = load(tmp_path, "    a: {url: 'not a url'}\n    b: {url: 'json://x', events: [oops]}")
    assert len(errs) == 2, errs
    assert errs[0].startswith("lab.yaml:6:") and "Apprise URL" in errs[0]
    assert errs[1].startswith("lab.yaml:7:") and "oops" in errs[1]


def test_tokens_in_the_path_or_query_of_a_plain_url_are_refused(tmp_path: Path) -> None:
    """discord://ID/TOKEN, slack://A/B/C, tgram://BOT/CHAT, a hook URL and ?token=: each
    refused at its line, pointing at the vault, without repeating the token."""
    errs = load(tmp_path, "    a: {url: 'discord://4242/DiscordHookToken99'}\n"
                          "    b: {url: 'slack://TeamTokA/TeamTokB/TeamTokC/#ops'}\n"
                          "    c: {url: 'tgram://123456:TelegramBotToken77/-100'}\n"
                          "    d: {url: 'https://discord.com/api/webhooks/1/HookTok'}\n"
                          "    e: {url: 'ntfy://ntfy.sh/lab?token=tk_NtfyToken55'}\n"
                          "    f: {url: 'ntfy://ntfy.sh/lab'}")
    assert [e.split(":", 2)[1] for e in errs] == ["6", "7", "8", "9", "10"], errs
    assert all("vault:notify/NAME" in e for e in errs), errs
    for token in ("DiscordHookToken99", "TeamTok", "TelegramBotToken77", "HookTok",
                  "tk_NtfyToken55"):
        assert not any(token in e for e in errs), (token, errs)
    assert "discord:// URL carries its token" in errs[0]
    assert "query (token=)" in errs[4]
