"""Where everything Gristmill keeps lives: SQL tables (SQLModel + Alembic) and the LanceDB chunk store."""
