from examtrail.cli.main import app

app()
