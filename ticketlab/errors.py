"""The one exception type the command line turns into a one-line error."""


class TicketlabError(Exception):
    """Bad input or an unusable file: the message is shown to the user as is."""
