"""Bounce mailbox messages of the shapes seen in the wild, written for these tests.

Each is a function of the VERP envelope sender and Message-ID of the message it returns,
so tests can aim it at a real delivery (or at nothing).
"""

from __future__ import annotations


def postfix_dsn(verp: str, message_id: str, rcpt: str, status: str = "5.1.1",
                action: str = "failed") -> bytes:
    """RFC 3464 multipart/report with text/rfc822-headers, as Postfix writes it."""
    return f"""Return-Path: <>
Delivered-To: {verp}
Date: Mon, 22 Dec 2025 10:00:00 +0000 (UTC)
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {verp}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="B1"
Message-Id: <bounce-{rcpt}-{status}@mx.example.net>

--B1
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{rcpt}>: host mx said: 550 {status} <{rcpt}>: Recipient address rejected

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: 4ABC
Arrival-Date: Mon, 22 Dec 2025 09:59:58 +0000 (UTC)

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 550 {status} <{rcpt}>: Recipient address rejected:
    User unknown in virtual mailbox table

--B1
Content-Type: text/rfc822-headers

From: Test Weekly <weekly@example.com>
To: <{rcpt}>
Subject: Test Weekly
Message-ID: <{message_id}>

--B1--
""".replace("\n", "\r\n").encode()


def exchange_dsn(to: str, message_id: str, rcpt: str) -> bytes:
    """A report carrying the whole original as message/rfc822; no VERP in sight."""
    return f"""From: postmaster@outlook.example
To: {to}
Subject: Undeliverable: Test Weekly
Date: Tue, 23 Dec 2025 08:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/report; report-type="delivery-status"; boundary="XB"

--XB
Content-Type: text/plain

Delivery has failed to these recipients or groups: {rcpt}

--XB
Content-Type: message/delivery-status

Reporting-MTA: dns;outlook.example

Final-Recipient: rfc822;{rcpt}
Action: failed
Status: 5.2.1
Diagnostic-Code: smtp;550 5.2.1 mailbox disabled

Final-Recipient: rfc822;other@outlook.example
Action: delivered
Status: 2.0.0

--XB
Content-Type: message/rfc822

From: Test Weekly <weekly@example.com>
To: {rcpt}
Subject: Test Weekly
Message-ID: <{message_id}>
Content-Type: text/plain

Hello.

--XB--
""".encode()


def arf(verp: str, rcpt: str, message_id: str = "x@y") -> bytes:
    """RFC 5965 feedback report (a complaint), as a mailbox provider's loop sends it."""
    return f"""From: feedback@fbl.example
To: fbl@example.com
Subject: FW: Test Weekly
Date: Wed, 24 Dec 2025 12:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="FB"

--FB
Content-Type: text/plain

This is an email abuse report.

--FB
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: FBL/1.0
Version: 1
Original-Mail-From: <{verp}>
Original-Rcpt-To: <{rcpt}>
Arrival-Date: Wed, 24 Dec 2025 11:00:00 +0000

--FB
Content-Type: text/rfc822-headers

From: Test Weekly <weekly@example.com>
To: {rcpt}
Message-ID: <{message_id}>
Subject: Test Weekly

--FB--
""".encode()


def qmail_plain(verp: str, rcpt: str, message_id: str) -> bytes:
    """A plain-text bounce with the status code in the prose (qmail's shape)."""
    return f"""From: MAILER-DAEMON@mail.example.org
To: {verp}
Subject: failure notice
Date: Thu, 25 Dec 2025 08:00:00 +0000

Hi. This is the qmail-send program at mail.example.org.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<{rcpt}>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

Return-Path: <{verp}>
Message-ID: <{message_id}>
Subject: Test Weekly
""".encode()


def gmail_plain_soft(to: str, rcpt: str, n: int, days_ago: int = 0) -> bytes:
    """A plain-text over-quota notice with a 4.x.x status code; matched by address."""
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    date = format_datetime(datetime.now(UTC) - timedelta(days=days_ago, hours=n))
    return f"""From: Mail Delivery Subsystem <mailer-daemon@googlemail.example>
To: {to}
Subject: Delivery Status Notification (Delay) {n}
Date: {date}
X-Failed-Recipients: {rcpt}

Message not delivered yet. The recipient's inbox is out of storage space.
The response was: 452 4.2.2 The email account that you tried to reach is over quota.
""".encode()


def auto_reply(to: str) -> bytes:
    return f"""From: someone@example.org
To: {to}
Subject: Out of office
Date: Fri, 26 Dec 2025 10:00:00 +0000

I am away until January. Status 5.1.1 is not what this is.
""".encode()
