from homeward.cli import app

app()
