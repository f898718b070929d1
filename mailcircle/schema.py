"""The database's schema, as recorded migrations (sqlite-utils).

The schema changes only by adding a function at the end of ``migrations`` below; applied
ones are recorded in ``_sqlite_migrations`` and never edited. ``db.connect`` applies them.
"""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from mailcircle.mail import attachments_of

migrations = Migrations("mailcircle")


@migrations(name="0001_initial")
def _initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE circles (
            id INTEGER PRIMARY KEY,
            address TEXT NOT NULL UNIQUE,          -- poets@example.org, lower case
            name TEXT NOT NULL,
            settings TEXT NOT NULL DEFAULT '{}',   -- JSON: the circle's own settings
            created_at TEXT NOT NULL
        );
        CREATE TABLE members (
            id INTEGER PRIMARY KEY,
            circle_id INTEGER NOT NULL REFERENCES circles(id),
            email TEXT NOT NULL,                   -- lower case
            name TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'active', -- pending, active, paused, left
            timezone TEXT NOT NULL DEFAULT 'UTC',
            joined_at TEXT NOT NULL,
            left_at TEXT,
            UNIQUE (circle_id, email)
        );
        -- Every mail accepted over SMTP, LMTP or IMAP, one row per circle recipient.
        -- The raw bytes are committed here before the sender is told 250.
        CREATE TABLE spool (
            id INTEGER PRIMARY KEY,
            received_at TEXT NOT NULL,
            source TEXT NOT NULL,                  -- smtp, lmtp, imap
            peer TEXT NOT NULL DEFAULT '',
            mail_from TEXT NOT NULL,               -- envelope sender; '' for bounces
            rcpt_to TEXT NOT NULL,                 -- the one circle address this row is for
            circle_id INTEGER REFERENCES circles(id),
            message_id TEXT NOT NULL DEFAULT '',
            dedupe_key TEXT NOT NULL,              -- Message-ID, or the content hash without one
            size INTEGER NOT NULL,
            raw BLOB NOT NULL,
            status TEXT NOT NULL DEFAULT 'new',    -- new, done, held, refused, ignored,
                                                   -- unhandled, duplicate, failed
            outcome TEXT NOT NULL DEFAULT '',      -- one sentence: what happened to it
            error TEXT NOT NULL DEFAULT '',        -- for failures: the traceback, for moderators
            attempts INTEGER NOT NULL DEFAULT 0,
            processed_at TEXT
        );
        CREATE INDEX spool_status ON spool (status, id);
        CREATE INDEX spool_dedupe ON spool (dedupe_key, rcpt_to);

        CREATE TABLE submissions (
            id INTEGER PRIMARY KEY,
            circle_id INTEGER NOT NULL REFERENCES circles(id),
            member_id INTEGER NOT NULL REFERENCES members(id),
            spool_id INTEGER NOT NULL REFERENCES spool(id),  -- the raw mail, attachments and all
            message_id TEXT NOT NULL,
            thread TEXT NOT NULL DEFAULT '',       -- References to carry into replies
            title TEXT NOT NULL,
            body TEXT NOT NULL,
            asks TEXT NOT NULL DEFAULT '',         -- the author's questions for reviewers
            word_count INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'queued', -- queued, assigned, closed, withdrawn
            submitted_at TEXT NOT NULL,
            UNIQUE (circle_id, message_id)
        );
        CREATE TABLE rounds (
            id INTEGER PRIMARY KEY,
            circle_id INTEGER NOT NULL REFERENCES circles(id),
            number INTEGER NOT NULL,
            starts_at TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'open',   -- open, closed
            UNIQUE (circle_id, number)
        );
        CREATE TABLE assignments (
            id INTEGER PRIMARY KEY,
            round_id INTEGER NOT NULL REFERENCES rounds(id),
            submission_id INTEGER NOT NULL REFERENCES submissions(id),
            reviewer_id INTEGER NOT NULL REFERENCES members(id),
            token TEXT NOT NULL UNIQUE,
            status TEXT NOT NULL DEFAULT 'open',   -- open, done, expired, passed_on
            backup_for INTEGER REFERENCES assignments(id),
            assigned_at TEXT NOT NULL,
            due_at TEXT NOT NULL,
            reminded_at TEXT,
            message_id TEXT NOT NULL DEFAULT ''    -- of the assignment mail, for threading
        );
        CREATE INDEX assignments_reviewer ON assignments (reviewer_id, status);
        CREATE TABLE critiques (
            id INTEGER PRIMARY KEY,
            assignment_id INTEGER NOT NULL REFERENCES assignments(id),
            spool_id INTEGER NOT NULL REFERENCES spool(id),
            message_id TEXT NOT NULL,
            body TEXT NOT NULL,                    -- the reviewer's own words
            trimmed TEXT NOT NULL DEFAULT '',      -- quotes and signatures, kept aside
            late INTEGER NOT NULL DEFAULT 0,
            received_at TEXT NOT NULL,
            UNIQUE (assignment_id, message_id)
        );
        -- Every outgoing mail, written in the same transaction as the change that causes it.
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            circle_id INTEGER REFERENCES circles(id),
            purpose TEXT NOT NULL,                 -- the template that made it
            message_id TEXT NOT NULL UNIQUE,
            mail_from TEXT NOT NULL,               -- envelope sender
            rcpt_to TEXT NOT NULL,
            raw BLOB NOT NULL,
            status TEXT NOT NULL DEFAULT 'queued', -- queued, sent, failed
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT NOT NULL DEFAULT '',
            spool_id INTEGER REFERENCES spool(id), -- the inbound mail it answers, if any
            created_at TEXT NOT NULL,
            sent_at TEXT
        );
        CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
        """
    )


@migrations(name="0002_imap_state")
def _imap_state(db: Database) -> None:
    db.executescript(
        """
        -- Where `mailcircle poll` is in each watched IMAP folder.
        CREATE TABLE imap_state (
            account TEXT NOT NULL,                 -- user@host:port
            folder TEXT NOT NULL,
            uidvalidity INTEGER NOT NULL,
            last_uid INTEGER NOT NULL,             -- every UID up to here has been taken
            updated_at TEXT NOT NULL,
            PRIMARY KEY (account, folder)
        );
        """
    )


@migrations(name="0003_roles_and_critique_replies")
def _roles_and_critique_replies(db: Database) -> None:
    db.executescript(
        """
        -- Moderators are members who also get the circle's notices.
        ALTER TABLE members ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
        -- A delivered critique: the token of its Reply-To (the author answers the reviewer
        -- through it) and the Message-ID of the mail that delivered it, for threading.
        ALTER TABLE critiques ADD COLUMN token TEXT;
        ALTER TABLE critiques ADD COLUMN delivered_message_id TEXT NOT NULL DEFAULT '';
        CREATE UNIQUE INDEX critiques_token ON critiques (token);
        CREATE INDEX assignments_submission ON assignments (submission_id);
        CREATE INDEX assignments_due ON assignments (status, due_at);
        """
    )


@migrations(name="0004_tokens_bounces_strangers")
def _tokens_bounces_strangers(db: Database) -> None:
    db.executescript(
        """
        -- Confirmations of +join and +leave: the token goes only to the address concerned,
        -- so nobody can join or remove someone else by forging a From: header.
        CREATE TABLE confirmations (
            token TEXT PRIMARY KEY,
            circle_id INTEGER NOT NULL REFERENCES circles(id),
            email TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            purpose TEXT NOT NULL,                 -- join, leave
            created_at TEXT NOT NULL,
            used_at TEXT
        );
        -- Each member's VERP token: mail to them is sent from poets+bounce-TOKEN@, so a
        -- bounce names the member it is about.
        ALTER TABLE members ADD COLUMN bounce_token TEXT;
        CREATE UNIQUE INDEX members_bounce_token ON members (bounce_token);
        CREATE TABLE bounces (
            id INTEGER PRIMARY KEY,
            member_id INTEGER NOT NULL REFERENCES members(id),
            spool_id INTEGER NOT NULL REFERENCES spool(id),
            kind TEXT NOT NULL,                    -- hard, soft
            status TEXT NOT NULL DEFAULT '',       -- the DSN's status code, e.g. 5.1.1
            received_at TEXT NOT NULL
        );
        -- When the author first answered a critique (a thank-you, counted in the digest).
        ALTER TABLE critiques ADD COLUMN thanked_at TEXT;
        -- When a stranger was last told how to join (one explanation per address per week).
        CREATE TABLE stranger_notices (
            circle_id INTEGER NOT NULL REFERENCES circles(id),
            email TEXT NOT NULL,
            sent_at TEXT NOT NULL,
            PRIMARY KEY (circle_id, email)
        );
        """
    )


@migrations(name="0005_digests_and_engagement_days")
def _digests_and_engagement_days(db: Database) -> None:
    db.executescript(
        """
        ALTER TABLE members ADD COLUMN digest TEXT NOT NULL DEFAULT 'weekly';  -- weekly, off
        -- One row per digest sent: the scheduler's memory, so none is sent twice.
        CREATE TABLE digests (
            member_id INTEGER NOT NULL REFERENCES members(id),
            slot TEXT NOT NULL,                    -- the digest time it was for (UTC)
            sent_at TEXT NOT NULL,
            PRIMARY KEY (member_id, slot)
        );
        -- Engagement days: a day the circle sets aside to talk about its writing.
        CREATE TABLE engagement_days (
            id INTEGER PRIMARY KEY,
            circle_id INTEGER NOT NULL REFERENCES circles(id),
            day TEXT NOT NULL,                     -- YYYY-MM-DD
            topic TEXT NOT NULL,
            created_at TEXT NOT NULL,
            agenda_sent_at TEXT
        );
        CREATE TABLE engagement_rsvps (
            engagement_id INTEGER NOT NULL REFERENCES engagement_days(id),
            member_id INTEGER NOT NULL REFERENCES members(id),
            answer TEXT NOT NULL,                  -- yes, no
            answered_at TEXT NOT NULL,
            PRIMARY KEY (engagement_id, member_id)
        );
        """
    )


@migrations(name="0007_senders")
def _senders(db: Database) -> None:
    db.executescript(
        """
        -- A confirmation may be bound to one held inbound mail: purpose 'held' (the member
        -- confirms it was them) or 'moderate' (a moderator releases or discards it).
        ALTER TABLE confirmations ADD COLUMN spool_id INTEGER REFERENCES spool(id);
        CREATE INDEX confirmations_spool ON confirmations (spool_id);
        -- What the circle remembers about one sender's recent mail, for caps and loops:
        -- kind 'body' (a hash of a mail's text), 'loop' (a mail that looked automatic),
        -- 'capped' (answers to the address were capped; moderators told).
        CREATE TABLE sender_marks (
            circle_id INTEGER NOT NULL REFERENCES circles(id),
            email TEXT NOT NULL,
            kind TEXT NOT NULL,
            value TEXT NOT NULL DEFAULT '',
            at TEXT NOT NULL
        );
        CREATE INDEX sender_marks_recent ON sender_marks (circle_id, email, kind, at);
        -- Answers sent to one address lately (the cap), and our recent mail to a member.
        CREATE INDEX outbox_recipient ON outbox (rcpt_to, created_at);
        """
    )


@migrations(name="0011_talk")
def _talk(db: Database) -> None:
    # Copies of one talk post share the author's Message-ID (so every client threads them),
    # so the outbox is unique per Message-ID and recipient instead of per Message-ID alone.
    # SQLite cannot drop a constraint: the table is rebuilt, every other index kept as it was.
    indexes = [
        sql
        for (sql,) in db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbox'"
            " AND sql IS NOT NULL"
        ).fetchall()
    ]
    columns = [row[1] for row in db.execute("PRAGMA table_info(outbox)").fetchall()]
    (table_sql,) = db.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'outbox'"
    ).fetchone()
    rebuilt = table_sql.replace("message_id TEXT NOT NULL UNIQUE", "message_id TEXT NOT NULL", 1)
    rebuilt = rebuilt.replace("CREATE TABLE outbox", "CREATE TABLE outbox_rebuilt", 1)
    listed = ", ".join(columns)
    db.execute(rebuilt)
    db.execute(f"INSERT INTO outbox_rebuilt ({listed}) SELECT {listed} FROM outbox")
    db.execute("DROP TABLE outbox")
    db.execute("ALTER TABLE outbox_rebuilt RENAME TO outbox")
    for sql in indexes:
        db.execute(sql)
    db.executescript(
        """
        CREATE UNIQUE INDEX outbox_message_rcpt ON outbox (message_id, rcpt_to);
        -- How each member reads the circle's talk: each (every post as it comes), digest
        -- (inside the weekly digest), off; and whether they get a copy of their own posts.
        ALTER TABLE members ADD COLUMN talk TEXT NOT NULL DEFAULT 'each';
        ALTER TABLE members ADD COLUMN talk_self INTEGER NOT NULL DEFAULT 0;
        -- Every post distributed through poets+talk@, once.
        CREATE TABLE talk_posts (
            id INTEGER PRIMARY KEY,
            circle_id INTEGER NOT NULL REFERENCES circles(id),
            member_id INTEGER NOT NULL REFERENCES members(id),
            spool_id INTEGER NOT NULL REFERENCES spool(id),
            message_id TEXT NOT NULL,              -- the author's own, kept on every copy
            parent_id INTEGER REFERENCES talk_posts(id),  -- the post it answers, if known
            thread_id INTEGER,                     -- the first post of its conversation
            subject TEXT NOT NULL,                 -- without Re: and the circle's tag
            body TEXT NOT NULL,
            word_count INTEGER NOT NULL,
            engagement_id INTEGER REFERENCES engagement_days(id),  -- posted on that day
            posted_at TEXT NOT NULL,
            UNIQUE (circle_id, message_id)
        );
        CREATE INDEX talk_posts_time ON talk_posts (circle_id, posted_at);
        CREATE INDEX talk_posts_message ON talk_posts (message_id);
        -- Engagement days: the kick-off mail on the day (its Message-ID heads the day's
        -- thread), and agenda items moderators add by mail or command line.
        ALTER TABLE engagement_days ADD COLUMN kickoff_sent_at TEXT;
        ALTER TABLE engagement_days ADD COLUMN kickoff_message_id TEXT NOT NULL DEFAULT '';
        CREATE TABLE engagement_agenda (
            id INTEGER PRIMARY KEY,
            engagement_id INTEGER NOT NULL REFERENCES engagement_days(id),
            item TEXT NOT NULL,
            added_by TEXT NOT NULL DEFAULT '',     -- who added it (an address or 'cli')
            created_at TEXT NOT NULL
        );
        -- Held talk posts moderators were told about (the scheduler's memory).
        CREATE TABLE talk_held_notices (
            spool_id INTEGER PRIMARY KEY REFERENCES spool(id),
            sent_at TEXT NOT NULL
        );
        """
    )


@migrations(name="0012_relay")
def _relay(db: Database) -> None:
    # A relay that refuses a member's address in the SMTP dialogue is a bounce too: it has
    # no spooled report, only the outgoing mail it refused.
    db.executescript(
        """
        CREATE TABLE bounces_new (
            id INTEGER PRIMARY KEY,
            member_id INTEGER NOT NULL REFERENCES members(id),
            spool_id INTEGER REFERENCES spool(id),  -- the bounce report, if one came by mail
            outbox_id INTEGER,                     -- the outgoing mail a relay refused
            kind TEXT NOT NULL,                    -- hard, soft, mailbox_full
            status TEXT NOT NULL DEFAULT '',       -- the DSN's status code, e.g. 5.1.1
            received_at TEXT NOT NULL
        );
        INSERT INTO bounces_new (id, member_id, spool_id, kind, status, received_at)
            SELECT id, member_id, spool_id, kind, status, received_at FROM bounces;
        DROP TABLE bounces;
        ALTER TABLE bounces_new RENAME TO bounces;
        CREATE INDEX bounces_member ON bounces (member_id, received_at);
        -- When a mail was last handed to the relay with no answer recorded yet (a process
        -- that stops then leaves it set, and the next one sends that mail again at once).
        ALTER TABLE outbox ADD COLUMN handed_at TEXT;
        """
    )


@migrations(name="0008_perf")
def _perf(db: Database) -> None:
    db.executescript(
        """
        -- Constant cost per mail: every query the worker and the scheduler run per mail or
        -- per run reads through one of these, never the whole of a growing table.
        CREATE INDEX IF NOT EXISTS submissions_queue ON submissions (circle_id, status, id);
        CREATE INDEX IF NOT EXISTS submissions_member ON submissions (member_id, status);
        CREATE INDEX IF NOT EXISTS submissions_time ON submissions (circle_id, submitted_at);
        CREATE INDEX IF NOT EXISTS assignments_round ON assignments (round_id);
        CREATE INDEX IF NOT EXISTS assignments_reviewer_round
            ON assignments (reviewer_id, round_id);
        CREATE INDEX IF NOT EXISTS assignments_message ON assignments (message_id);
        CREATE INDEX IF NOT EXISTS critiques_delivered ON critiques (delivered_message_id);
        CREATE INDEX IF NOT EXISTS critiques_received ON critiques (received_at);
        CREATE INDEX IF NOT EXISTS critiques_thanked ON critiques (thanked_at);
        CREATE INDEX IF NOT EXISTS rounds_starts ON rounds (circle_id, starts_at);
        CREATE INDEX IF NOT EXISTS bounces_member ON bounces (member_id, received_at);
        CREATE INDEX IF NOT EXISTS digests_slot ON digests (slot);
        CREATE INDEX IF NOT EXISTS engagement_days_circle ON engagement_days (circle_id, day);
        """
    )


@migrations(name="0010_exec")
def _exec(db: Database) -> None:
    db.executescript(
        """
        -- Who works this database's spool and outbox: exactly one process at a time.
        CREATE TABLE leases (
            name TEXT PRIMARY KEY,                 -- "worker": the spool and the outbox
            holder TEXT NOT NULL,                  -- host:pid:random, unique per process
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            command TEXT NOT NULL,                 -- serve, poll, poll --once
            since TEXT NOT NULL,
            heartbeat_at TEXT NOT NULL,
            expires_at TEXT NOT NULL               -- another process may take it after this
        );
        -- Attempts counted before processing, so a crash counts: unfinished starts, deaths of
        -- the worker process while on this mail, and the worker process that holds it now.
        ALTER TABLE spool ADD COLUMN started INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE spool ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE spool ADD COLUMN claimed_by INTEGER;
        -- One answer per inbound mail however many recipient rows it has.
        CREATE INDEX IF NOT EXISTS outbox_spool ON outbox (spool_id);
        """
    )


@migrations(name="draft_files")
def _draft_files(db: Database) -> None:
    # Statement by statement (executescript would commit midway): the table and its
    # backfill are one transaction with the record of this migration.
    db.execute(
        """
        -- The files attached to a draft, stored when the draft is taken: they go to its
        -- reviewers with every assignment mail, and the spooled mail is not read again.
        CREATE TABLE draft_files (
            submission_id INTEGER NOT NULL REFERENCES submissions(id),
            position INTEGER NOT NULL,             -- 0, 1, ... in the order of the mail
            filename TEXT NOT NULL,                -- as reviewers see it ('draft' if none)
            content_type TEXT NOT NULL,
            payload BLOB NOT NULL,                 -- decoded from its transfer encoding
            PRIMARY KEY (submission_id, position)  -- its index finds a draft's files
        )
        """
    )
    # Drafts taken before: their files as rounds read them until now, from the spooled
    # mail (multipart mails only; a part without a name is 'draft'). A spooled mail that
    # was erased (raw blanked) or is gone gives none, as it did.
    taken = db.execute(
        "SELECT s.id, p.raw FROM submissions s JOIN spool p ON p.id = s.spool_id"
        " WHERE length(p.raw) > 0 ORDER BY s.id"
    )
    for submission_id, raw in taken:
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
        if headers.get_content_maintype() != "multipart":
            continue
        db.conn.executemany(
            "INSERT INTO draft_files (submission_id, position, filename, content_type, payload)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                (submission_id, n, a.filename or "draft", a.content_type, a.payload)
                for n, a in enumerate(attachments_of(raw))
            ),
        )
