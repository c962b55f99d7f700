"""Bounce and complaint processing: read a mailbox, classify, match, update the list.

`classify` reads one message (RFC 3464 DSN, RFC 5965 ARF, or a plain-text bounce with a
status code); `mailboxes` reads Maildir, mbox and IMAP and moves what was processed;
`process` matches each finding to its delivery and records it through the store.
"""
