"""An SMTP server on loopback for verifyd's tests (aiosmtpd, from Debian's python3-aiosmtpd).

python3 tests/smtp/server.py PORT OUT [--starttls CERT KEY | --implicit CERT KEY] [--auth USER:PASS]

Prints `ready` once it accepts connections, and appends one JSON line per message to OUT:
{"from", "to", "subject", "text", "html", "auth"} with the parts decoded. A recipient whose local
part starts with `refused` is answered 550. Runs until killed.
"""

import email
import email.policy
import json
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


class Handler:
    def __init__(self, out):
        self.out = out

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split('@')[0].startswith('refused'):
            return '550 5.1.1 no such mailbox here'
        envelope.rcpt_tos.append(address)
        return '250 OK'

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = message.get_body(preferencelist=('plain',))
        html = message.get_body(preferencelist=('html',))
        record = {
            'from': envelope.mail_from,
            'to': envelope.rcpt_tos,
            'header_from': str(message['From']),
            'subject': str(message['Subject']),
            'message_id': str(message['Message-ID']),
            'text': text.get_content() if text else None,
            'html': html.get_content() if html else None,
            'auth': session.authenticated,
            'tls': server.transport.get_extra_info('ssl_object') is not None,
        }
        with open(self.out, 'a', encoding='utf-8') as f:
            f.write(json.dumps(record) + '\n')
        return '250 Message accepted'


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    args = sys.argv[3:]
    kwargs = {}
    ssl_context = None
    if '--starttls' in args:
        i = args.index('--starttls')
        kwargs.update(tls_context=context(args[i + 1], args[i + 2]), require_starttls=True)
    if '--implicit' in args:
        i = args.index('--implicit')
        ssl_context = context(args[i + 1], args[i + 2])
    if '--auth' in args:
        user, password = args[args.index('--auth') + 1].split(':', 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword)
                  and auth_data.login.decode() == user and auth_data.password.decode() == password)
            return AuthResult(success=ok, handled=False)

        kwargs.update(authenticator=authenticator, auth_required=True,
                      auth_require_tls=ssl_context is None and 'tls_context' in kwargs)
    controller = Controller(Handler(out), hostname='127.0.0.1', port=port,
                            ssl_context=ssl_context, server_hostname='localhost', **kwargs)
    controller.start()
    print('ready', flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == '__main__':
    main()
