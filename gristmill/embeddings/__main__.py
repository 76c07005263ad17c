from gristmill.embeddings.server import main

main()
