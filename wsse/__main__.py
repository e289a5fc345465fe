from wsse._cli import main

main()
